"""Atelier for Blender: text-driven stylization (and more) of your objects by a local or remote PyTorch backend.

The add-on is a thin client: it sends the selected object's mesh to the Atelier backend over ZeroMQ and
brings results back as Blender data. Modules that need no `bpy` (client, supervisor, runtime, jobs, kinds,
meshpack, curve, protocol) are unit-tested without Blender's UI; the rest is Blender glue.

register() walks `CLASSES` in order, unregister() in reverse (Dream Textures style).
"""

from __future__ import annotations

import bpy

from .engine import session
from .operators.job_ops import OPERATORS
from .operators.library_ops import LIBRARY_OPERATORS
from .operators.segment_ops import SEGMENT_OPERATORS
from .ui import setup_ui
from .ui.panels import PANELS
from .ui.preferences import AtelierPreferences
from .ui.properties import (AtelierChosenLibrary, AtelierSceneSettings, AtelierSegmentPoint, AtelierStyleImage,
                            register_properties, unregister_properties)

CLASSES = (
    AtelierPreferences,
    AtelierStyleImage,
    AtelierSegmentPoint,
    AtelierChosenLibrary,
    AtelierSceneSettings,
    *OPERATORS,
    *LIBRARY_OPERATORS,
    *SEGMENT_OPERATORS,
    *PANELS,
    *setup_ui.SETUP_CLASSES,
)
"""Every Blender class of the add-on, in registration order."""


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    register_properties()
    session.register()


def unregister() -> None:
    setup_ui.unregister()
    session.unregister()
    unregister_properties()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
