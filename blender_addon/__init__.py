"""Atelier for Blender: text-driven stylization (and more) of your objects by a local or remote PyTorch backend.

The add-on is a thin client: it sends the selected object's mesh to the Atelier backend over ZeroMQ and
brings results back as Blender data. Modules that need no `bpy` (client, supervisor, runtime, jobs, kinds,
meshpack, curve, protocol) are unit-tested without Blender's UI; the rest is Blender glue.

register() walks `CLASSES` in order, unregister() in reverse (Dream Textures style).
"""

from __future__ import annotations

import bpy

from . import session, setup_ui
from .operators import OPERATORS
from .panels import PANELS
from .preferences import AtelierPreferences
from .properties import (AtelierSceneSettings, AtelierSegmentPoint, AtelierStyleImage, register_properties,
                         unregister_properties)
from .segment_ops import SEGMENT_OPERATORS

CLASSES = (
    AtelierPreferences,
    AtelierStyleImage,
    AtelierSegmentPoint,
    AtelierSceneSettings,
    *OPERATORS,
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
