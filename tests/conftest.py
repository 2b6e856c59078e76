"""Shared test fixtures: paths to the two environments and tiny seeded data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def blender_python() -> Path:
    """The bpy environment's interpreter (`python build.py test` creates it; ATELIER_BLENDER_PYTHON overrides)."""
    override = os.environ.get("ATELIER_BLENDER_PYTHON")
    if override:
        return Path(override)
    venv = ROOT / ".venv-blender"
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


@pytest.fixture(scope="session")
def bpy_python() -> Path:
    path = blender_python()
    if not path.exists():
        # A missing environment is a broken set-up, not a reason to skip: fail loudly.
        pytest.fail(f"the bpy environment is missing at {path}; run `python build.py test` to create it")
    return path
