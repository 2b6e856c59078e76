"""Add-on tests: run with the Blender environment's python (bpy 5.0.1 + pyzmq, no torch).

`python build.py test` runs them with `.venv-blender/bin/python -m pytest tests/addon` and sets
ATELIER_BACKEND_PYTHON to the backend environment's python, which the add-on starts as its backend (small
settings: CPU, the `tiny` CLIP, a few steps). bpy's timers never fire here, so tests call
`session.drain()` themselves (`addon_helpers.pump_until`).
"""

from __future__ import annotations

import importlib.abc
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the add-on and shared_protocol, as a developer's Blender would see them

from addon_helpers import FORBIDDEN, backend_python, configure_prefs, forbidden_loaded  # noqa: E402

try:
    import bpy  # noqa: F401
except ImportError:  # the backend environment (plain `pytest`): these tests run under .venv-blender
    bpy = None
    collect_ignore_glob = ["test_*.py"]


class _Forbid(importlib.abc.MetaPathFinder):
    """Fails any import of a FORBIDDEN module, as it would fail inside Blender."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"the add-on imported {name!r}: Blender has no {name.split('.')[0]} (the add-on may "
                              "import only bpy, numpy, zmq and shared_protocol)")
        return None


if bpy is not None:
    sys.meta_path.insert(0, _Forbid())


@pytest.fixture(autouse=True)
def _no_backend_imports():
    yield
    assert forbidden_loaded() == [], "the add-on imported backend/torch modules"


@pytest.fixture
def image_editor():
    """An Image Editor in the window (one of the factory layout's other areas, turned back afterwards)."""
    window = bpy.context.window_manager.windows[0]
    area = next(a for a in window.screen.areas if a.type not in ("VIEW_3D", "IMAGE_EDITOR"))
    before = area.type
    area.type = "IMAGE_EDITOR"
    space = area.spaces.active
    yield space
    space.image = None
    area.type = before


@pytest.fixture(scope="session")
def backend_py() -> Path:
    return backend_python()


@pytest.fixture(scope="session")
def addon(backend_py, tmp_path_factory):
    """The add-on enabled through addon_utils (as Blender enables it), with test preferences."""
    import addon_utils
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    module = addon_utils.enable("blender_addon", default_set=True, handle_error=None)
    assert module is not None, "addon_utils.enable('blender_addon') failed"
    configure_prefs(backend_py, tmp_path_factory.mktemp("addon-logs"))
    yield module
    addon_utils.disable("blender_addon", default_set=True, handle_error=None)


# -- the Blender version matrix (`python build.py test` runs these tests in bpy 4.2 LTS, 4.5 LTS and 5.0) ----------

def pytest_report_header(config):
    if bpy is not None:
        return f"Blender module: bpy {bpy.app.version_string} (expected: {os.environ.get('ATELIER_EXPECT_BPY', 'any')})"


_EXIT = {}


def pytest_sessionfinish(session, exitstatus):
    _EXIT["status"] = int(exitstatus)


def pytest_unconfigure(config):
    # bpy < 5.0 crashes (4.2) or hangs (4.5) in its own teardown at interpreter exit once the add-on's classes were
    # registered: end the run here, after pytest has written everything, with its exit status (tools/bpy_exit.py).
    if bpy is not None and "status" in _EXIT:
        sys.path.insert(0, str(ROOT / "tools"))
        from bpy_exit import exit_blender_module

        if tuple(bpy.app.version) < (5, 0, 0):
            exit_blender_module(_EXIT["status"])
