"""The add-on tests run in the bpy build.py asked for (the matrix: 4.2 LTS, 4.5 LTS, 5.0)."""

from __future__ import annotations

import os

import bpy
import pytest


@pytest.mark.skipif("ATELIER_EXPECT_BPY" not in os.environ, reason="run outside build.py's Blender matrix")
def test_the_blender_module_is_the_one_asked_for():
    expected = tuple(int(part) for part in os.environ["ATELIER_EXPECT_BPY"].split("."))
    assert tuple(bpy.app.version) == expected, (bpy.app.version_string, expected)
