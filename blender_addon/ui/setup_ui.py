"""The preferences' "Install backend" and weights manager: operators, the timer, and what the preferences draw.

The work happens in `installer.Runner` threads (see installer.py, weights.py); `tick()` is the
`bpy.app.timers` callback that reads their state on the main thread, sets "Backend Python" when an install
succeeds and redraws the preferences. Like `session.drain`, it is a plain function tests call directly.
"""

from __future__ import annotations

import atexit
import sys
import textwrap
import time
from pathlib import Path

import bpy

from ..core.errors import AddonError
from ..engine.installer import (NVDIFFRAST_LICENCE, InstallOptions, Runner, RunState, default_source, detect_platform,
                                make_plan, quick_platform, torch_variant)
from ..engine.settings import ADDON_ID, backend_settings, get_prefs
from ..engine.weights import WeightsManager

TICK_INTERVAL = 0.2

_install: Runner | None = None
_install_options: InstallOptions | None = None
_install_notice = ("", "")
"""(message, hint) of the last install: refused input, or what a finished run set."""
_last_state: RunState | None = None
"""The last finished install's state (its log path, its step), for the preferences."""
_weights = WeightsManager()


def _prefs(context=None):
    return get_prefs(context)


def _prefs_or_report(op, context):
    """The add-on's preferences, or None after reporting that the add-on must be enabled first."""
    prefs = _prefs(context)
    if prefs is None:
        op.report({"ERROR"}, "enable the Atelier add-on in Preferences > Add-ons first")
    return prefs


# -- where things go ------------------------------------------------------------------------------------

def install_root(prefs=None, create: bool = True) -> Path:
    """The folder holding the backend's venv and the install/weights logs: the preference "Install folder", else
    the extension's user folder, else (the add-on loaded from a checkout) Blender's user data folder."""
    if prefs is not None and prefs.install_dir:
        return Path(bpy.path.abspath(prefs.install_dir))
    try:
        return Path(bpy.utils.extension_path_user(ADDON_ID, create=create))
    except ValueError:  # not an extension (a developer's link, the tests)
        return Path(bpy.utils.user_resource("DATAFILES", path="atelier", create=create))


def base_python(prefs) -> str:
    """The interpreter that makes the venv: the preference, else Blender's own Python."""
    return bpy.path.abspath(prefs.install_base_python) if prefs.install_base_python else sys.executable


def install_options(prefs) -> InstallOptions:
    source = bpy.path.abspath(prefs.install_source) if prefs.install_source else default_source()
    return InstallOptions(base_python=base_python(prefs), venv_dir=install_root(prefs) / "venv", source=source,
                          torch=prefs.install_torch.lower(), nvdiffrast=prefs.install_nvdiffrast)


def build_plan(options: InstallOptions):
    """What the runner runs: a callable, so nvidia-smi is asked in the runner's thread. Tests replace it."""
    return lambda: make_plan(options, detect_platform())


def backend_python(prefs) -> str:
    """The Backend Python the weights manager runs (the preference, else $ATELIER_BACKEND_PYTHON)."""
    return backend_settings(prefs).python


# -- the timer ------------------------------------------------------------------------------------------

def _busy() -> bool:
    return (_install is not None and _install.snapshot().busy) or _weights.busy


def _ensure_timer() -> None:
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=TICK_INTERVAL, persistent=True)
    atexit.unregister(_at_exit)
    atexit.register(_at_exit)


def _at_exit() -> None:
    # Blender quits: stop pip (and what it started) rather than leave it running unseen.
    if _install is not None:
        _install.cancel()
    _weights.cancel()


def tick() -> float | None:
    """Reads the install's and the weights manager's threads; sets Backend Python after a good install. Returns
    the delay to the next call, or None (the timer stops) when nothing runs."""
    global _install

    changed = False
    if _install is not None:
        state = _install.snapshot()
        changed = True
        if not state.busy:
            _install_finished(state)
            _install = None
    changed |= _weights.poll()
    if changed:
        _redraw()
    return TICK_INTERVAL if _busy() else None


def _install_finished(state: RunState) -> None:
    global _install_notice, _last_state

    _last_state = state
    if state.status == "done" and _install_options is not None:
        python = str(_install_options.python)
        prefs = _prefs()
        if prefs is not None:
            prefs.python = python
            bpy.context.preferences.is_dirty = True
        _install_notice = (f"Installed: Backend Python is now {python}",
                           "Start (or Restart) the backend to use it; Refresh Model List below shows its models")
        _notify(f"Atelier backend installed: {python}", "INFO")
    elif state.status == "failed":
        _install_notice = (state.message, state.hint)
        _notify(f"Atelier install failed: {state.message} ({state.hint})", "ERROR")
    else:
        _install_notice = ("The install was cancelled", state.hint)


def _notify(text: str, level: str) -> None:
    try:
        bpy.ops.atelier.notify(level=level, message=text[:1000])
    except Exception:  # noqa: BLE001  no context for reports here: the console has it
        print(f"Atelier {level.lower()}: {text}")


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in (wm.windows if wm is not None else ()):
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()


def install_state() -> RunState | None:
    """The running install's state, else the last finished one's (None before any)."""
    return _install.snapshot() if _install is not None else _last_state


def weights_manager() -> WeightsManager:
    return _weights


def unregister() -> None:
    """Stops what runs (a half-made environment is redone by the next install) and the timer."""
    global _install, _weights, _last_state, _install_notice

    if _install is not None:
        _install.cancel()
        _install = None
    _weights.cancel()
    _weights = WeightsManager()
    _last_state, _install_notice = None, ("", "")
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    atexit.unregister(_at_exit)


# -- operators ------------------------------------------------------------------------------------------

class ATELIER_OT_backend_install(bpy.types.Operator):
    """Create the backend's own Python environment (a venv) with PyTorch for this computer and the Atelier
    backend, in the background; "Backend Python" is set to it when it is done"""
    bl_idname = "atelier.backend_install"
    bl_label = "Install Backend"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        global _install, _install_options, _install_notice, _last_state

        if _install is not None and _install.snapshot().busy:
            self.report({"ERROR"}, "an install is already running (cancel it first)")
            return {"CANCELLED"}
        prefs = _prefs_or_report(self, context)
        if prefs is None:
            return {"CANCELLED"}
        try:
            options = install_options(prefs)
            options.validate()
            root = install_root(prefs)
        except AddonError as exc:
            _install_notice = (exc.message, exc.hint)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        log_path = root / "logs" / f"install-{time.strftime('%Y%m%d-%H%M%S')}.log"
        _install_options, _install_notice, _last_state = options, ("", ""), None
        _install = Runner(build_plan(options), log_path, cwd=root, folder=root, title="Atelier backend install")
        _install.start()
        _ensure_timer()
        self.report({"INFO"}, f"Installing the Atelier backend into {options.venv_dir} (log: {log_path})")
        return {"FINISHED"}


class ATELIER_OT_backend_install_cancel(bpy.types.Operator):
    """Stop the running install (run Install Backend again to finish it later)"""
    bl_idname = "atelier.backend_install_cancel"
    bl_label = "Cancel Install"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        if _install is not None:
            _install.cancel()
        return {"FINISHED"}


def _weights_call(op, context, action) -> set[str]:
    prefs = _prefs_or_report(op, context)
    if prefs is None:
        return {"CANCELLED"}
    try:
        action(backend_python(prefs), install_root(prefs) / "logs")
    except AddonError as exc:
        if exc.code != "weights_busy":  # a refused second action leaves the running one's line alone
            _weights.message, _weights.hint, _weights.failed = exc.message, exc.hint, True
        op.report({"ERROR"}, str(exc))
        return {"CANCELLED"}
    _ensure_timer()
    return {"FINISHED"}


class ATELIER_OT_weights_refresh(bpy.types.Operator):
    """List the models the backend knows: sizes, licences, and whether they are on this computer"""
    bl_idname = "atelier.weights_refresh"
    bl_label = "Refresh Model List"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        return _weights_call(self, context, lambda python, logs: _weights.refresh(python, logs))


class ATELIER_OT_weights_pull(bpy.types.Operator):
    """Download these weights into the backend's cache (in the background)"""
    bl_idname = "atelier.weights_pull"
    bl_label = "Download"
    bl_options = {"INTERNAL"}

    name: bpy.props.StringProperty(name="Model")

    def execute(self, context):
        return _weights_call(self, context, lambda python, logs: _weights.pull(python, self.name, logs))


class ATELIER_OT_weights_import(bpy.types.Operator):
    """Use a weights file you already have: it is checked, then copied into the backend's store"""
    bl_idname = "atelier.weights_import"
    bl_label = "Use Local File"
    bl_options = {"INTERNAL"}

    name: bpy.props.StringProperty(name="Model")
    filepath: bpy.props.StringProperty(name="File", subtype="FILE_PATH")
    filter_glob: bpy.props.StringProperty(default="*.pt;*.pth;*.bin;*.safetensors", options={"HIDDEN"})

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        path = bpy.path.abspath(self.filepath) if self.filepath else ""
        return _weights_call(self, context, lambda python, logs: _weights.import_file(python, self.name, path, logs))


class ATELIER_OT_weights_cancel(bpy.types.Operator):
    """Stop the running download or import"""
    bl_idname = "atelier.weights_cancel"
    bl_label = "Cancel"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        _weights.cancel()
        return {"FINISHED"}


SETUP_CLASSES = (
    ATELIER_OT_backend_install,
    ATELIER_OT_backend_install_cancel,
    ATELIER_OT_weights_refresh,
    ATELIER_OT_weights_pull,
    ATELIER_OT_weights_import,
    ATELIER_OT_weights_cancel,
)


# -- drawing (called by AtelierPreferences.draw) ----------------------------------------------------------

def _progress(layout, state: RunState, text: str) -> None:
    if hasattr(layout, "progress"):  # Blender 4.0+
        layout.progress(factor=state.fraction, type="BAR", text=text)
    else:
        layout.label(text=text)


def _log_row(layout, path: str) -> None:
    row = layout.row()
    row.label(text=f"Log: {path}", icon="TEXT")
    row.operator("wm.path_open", text="", icon="FILE_FOLDER").filepath = str(Path(path).parent)


def _lines(layout, text: str, icon: str = "NONE", width: int = 110) -> None:
    """`text` as labels of at most `width` characters (a label does not wrap; the window would clip it)."""
    for index, line in enumerate(textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [""]):
        layout.label(text=line, icon=icon if index == 0 else "BLANK1" if icon != "NONE" else "NONE")


def _notice(layout, message: str, hint: str, error: bool) -> None:
    column = layout.column(align=True)
    _lines(column, message, "ERROR" if error else "INFO")
    if hint:
        _lines(column, hint, "BLANK1")


_PLATFORM = None


def draw_install(prefs, layout) -> None:
    global _PLATFORM

    box = layout.box()
    box.label(text="Install Backend", icon="CONSOLE")
    col = box.column()
    col.prop(prefs, "install_base_python")
    if not prefs.install_base_python:
        col.label(text=f"Using Blender's own Python: {sys.executable}")
    col.prop(prefs, "install_dir")
    if not prefs.install_dir:
        try:
            col.label(text=f"Installs into {install_root(prefs, create=False) / 'venv'}")
        except (OSError, ValueError):
            pass
    col.prop(prefs, "install_source")
    if not prefs.install_source:
        found = default_source()
        col.label(text=f"Using this checkout: {found}" if found else
                  "Choose the Atelier checkout folder (with pyproject.toml) or an atelier wheel / sdist",
                  icon="NONE" if found else "ERROR")
    col.prop(prefs, "install_torch")
    _PLATFORM = _PLATFORM or quick_platform()  # no process here: nvidia-smi is asked when the install runs
    try:
        picked = {"cuda": "CUDA wheels", "mps": "macOS wheels (MPS)", "cpu": "CPU wheels"}[
            torch_variant(prefs.install_torch.lower(), _PLATFORM)]
        col.label(text=f"This computer: {_PLATFORM.describe()}; PyTorch: {picked}")
    except AddonError as exc:
        col.label(text=str(exc), icon="ERROR")
    col.prop(prefs, "install_nvdiffrast")
    licence = col.column(align=True)
    licence.scale_y = 0.8
    _lines(licence, NVDIFFRAST_LICENCE, "ERROR" if prefs.install_nvdiffrast else "INFO")

    state = install_state()
    if state is not None and state.busy:
        _progress(box, state, f"Step {state.step} of {state.total}: {state.label}" if state.total else "Starting")
        if state.line:
            box.label(text=state.line[:160])
        box.operator("atelier.backend_install_cancel", text="Cancel Install", icon="CANCEL")
    else:
        box.operator("atelier.backend_install", text="Install Backend", icon="IMPORT")
    message, hint = _install_notice
    if message and not (state is not None and state.busy):
        _notice(box, message, hint, error=state is None or state.status == "failed")
    if state is not None:
        _log_row(box, state.log_path)


def draw_weights(prefs, layout) -> None:
    box = layout.box()
    box.label(text="Model Weights", icon="FILE_BLEND")
    if prefs.mode != "LOCAL":
        box.label(text="A remote backend keeps its weights on its own machine: run `atelier models list`, "
                       "`atelier models pull NAME` or `atelier models import NAME FILE` there")
        return
    python = backend_python(prefs)
    row = box.row()
    row.label(text=f"Backend Python: {python}" if python else "Set Backend Python (or install the backend) first")
    manager = _weights
    state = manager.state()
    if state is not None and state.busy:
        row.operator("atelier.weights_cancel", text="Cancel", icon="CANCEL")
        text = manager.action.describe() if manager.action is not None else state.label
        if manager.action is not None and manager.action.kind == "pull":
            text += f" {state.fraction:.0%}" if state.fraction > 0 else ": downloading... (see the log)"
        _progress(box, state, text)
        if state.line:
            box.label(text=state.line[:160])
    else:
        row.operator("atelier.weights_refresh", text="Refresh Model List", icon="FILE_REFRESH")
    if manager.message:
        _notice(box, manager.message, manager.hint, manager.failed)
    if manager.listed_with and python and manager.listed_with != str(Path(python).expanduser()):
        box.label(text=f"(listed with {manager.listed_with})")
    if not manager.rows:
        if not (state is not None and state.busy):
            box.label(text="Refresh to list the models (the backend starts for a few seconds)")
        return
    busy = state is not None and state.busy
    for model in manager.rows:
        item = box.box()
        top = item.row()
        top.label(text=model["name"], icon="CHECKMARK" if model["present"] else "IMPORT")
        top.label(text=f"{model['kind']} · {model['size_human']} · {'present' if model['present'] else 'missing'}")
        buttons = top.row(align=True)
        buttons.enabled = not busy
        pull = buttons.row(align=True)
        pull.enabled = not model["present"]
        pull.operator("atelier.weights_pull", text="Download", icon="URL").name = model["name"]
        buttons.operator("atelier.weights_import", text="Use Local File", icon="FILEBROWSER").name = model["name"]
        details = item.column()
        details.scale_y = 0.8
        details.label(text=f"Licence: {model['licence']}")
        details.label(text=model["path"] if model["present"] else (model.get("description") or ""))
