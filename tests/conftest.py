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


TINY_GENERATOR_FLAGS = ["--clip", "tiny", "--device", "cpu", "--ae-steps", "40", "--flow-steps", "40", "--batch", "6",
                        "--points", "256", "--views", "2", "--latent", "16", "--width", "32", "--encoder-channels", "4"]
"""`atelier train-generator` shrunk to seconds: plumbing only (the tiny random CLIP)."""


@pytest.fixture(scope="session")
def tiny_generator_flags() -> list[str]:
    return list(TINY_GENERATOR_FLAGS)


@pytest.fixture(scope="session")
def shape_library(tmp_path_factory) -> Path:
    """Six world shapes as GLB, two per category folder (chair, lamp, table)."""
    from backend.geometry.glb import export_glb
    from backend.world.shape import make_shape

    root = tmp_path_factory.mktemp("shape_library")
    for category in ("chair", "table", "lamp"):
        (root / category).mkdir()
        for seed in range(2):
            export_glb(make_shape(seed, category).mesh, root / category / f"{category}_{seed}.glb")
    return root


@pytest.fixture(scope="session")
def tiny_generator(shape_library, tmp_path_factory) -> Path:
    """A generator checkpoint trained on `shape_library` through the CLI with TINY_GENERATOR_FLAGS."""
    from backend.cli import main

    out = tmp_path_factory.mktemp("generator") / "tiny_generator.pt"
    assert main(["train-generator", "--library", str(shape_library), "--out", str(out), *TINY_GENERATOR_FLAGS]) == 0
    return out
