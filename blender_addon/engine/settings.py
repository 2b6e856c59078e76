"""The add-on's preferences read into plain settings, for every layer that needs them.

`preferences` (which declares the properties), `session` (which starts the backend) and `setup_ui` (which
installs it) all read the preferences; they read them here, through `bpy.context.preferences.addons`, so none
of them imports another to do it.
"""

from __future__ import annotations

import os
from pathlib import Path

import bpy

from .runtime import BackendSettings, default_log_dir

ADDON_ID = __package__.rpartition(".")[0]
"""The add-on's module name (the package above `engine`): `bl_ext.<repo>.atelier` when installed as an extension,
`blender_addon` in tests. The preferences' `bl_idname`."""


def user_dir(sub: str) -> Path:
    """A folder for the add-on's user data: the extension's user folder, or the temp dir when the add-on
    runs from a checkout (not installed as an extension)."""
    try:
        return Path(bpy.utils.extension_path_user(ADDON_ID, path=sub, create=True))
    except ValueError:
        return default_log_dir() / sub


def get_prefs(context=None):
    """The add-on's preferences (`AtelierPreferences`), or None when it is not enabled through Blender (plain
    `register()`)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return None if addon is None else addon.preferences


def pref_text(context, name: str) -> str:
    """A text preference such as "clip", or "" (the backend's default) when the add-on has no preferences."""
    prefs = get_prefs(context)
    return "" if prefs is None else getattr(prefs, name)


def backend_settings(prefs) -> BackendSettings:
    """The preferences as `BackendSettings`: Blender-relative paths made absolute, empty ones defaulted."""
    return BackendSettings(
        mode=prefs.mode.lower(), python=bpy.path.abspath(prefs.python) if prefs.python else
        os.environ.get("ATELIER_BACKEND_PYTHON", ""), device=prefs.device,
        remote_address=prefs.remote_address, curve_dir=bpy.path.abspath(prefs.curve_dir) if prefs.curve_dir else "",
        log_dir=Path(bpy.path.abspath(prefs.log_dir)) if prefs.log_dir else user_dir("logs"),
        start_timeout=prefs.start_timeout, connect_timeout=prefs.connect_timeout,
        blender=bpy.path.abspath(prefs.index_blender) if prefs.index_blender else bpy.app.binary_path)


def current_settings(context=None) -> BackendSettings:
    """The backend settings the preferences hold now (defaults and $ATELIER_BACKEND_PYTHON without them)."""
    prefs = get_prefs(context)
    if prefs is None:
        return BackendSettings(python=os.environ.get("ATELIER_BACKEND_PYTHON", ""), log_dir=user_dir("logs"))
    return backend_settings(prefs)
