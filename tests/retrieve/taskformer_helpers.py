"""Tiny world datasets for the TASK-former tests (training, evaluation, CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backend.world.dataset import write_dataset


def tiny_world(path: Path, shapes: int = 16, photos: int = 1, views: int = 2, size: int = 32) -> Path:
    """A world dataset of `shapes` shapes (one test shape per category from 16 on), `views` views and
    sketches and `photos` photos each, at `size` px: about a second to write with one thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        write_dataset(path, shapes, seed=3, views=views, size=size, photos=photos)
    finally:
        torch.set_num_threads(previous)
    return path


@pytest.fixture
def one_thread():
    """Torch on one CPU thread for the test: these are small kernels, and on a shared 2-core machine two
    OpenMP threads ran them many times slower than one (measured)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module", autouse=True)
def module_home(tmp_path_factory: pytest.TempPathFactory):
    """A module's own $ATELIER_HOME, for the caches training writes (drawn sketches, the index's line drawings):
    filled once per module, never the user's. Autouse in the modules that import it."""
    patch = pytest.MonkeyPatch()
    patch.setenv("ATELIER_HOME", str(tmp_path_factory.mktemp("home")))
    yield
    patch.undo()
