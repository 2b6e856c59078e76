"""Fixtures for the segmentation tests: one torch thread, a tiny random SAM checkpoint, an empty weights cache."""

from __future__ import annotations

import pytest
import torch

from tests.segment.segment_helpers import write_tiny_sam


@pytest.fixture(autouse=True)
def one_thread():
    """The test machines share two cores: one torch thread per test keeps the tiny models fast."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_sam_path(tmp_path_factory):
    """TINY_SAM saved as an Atelier SAM checkpoint (the real loader reads it back)."""
    return write_tiny_sam(tmp_path_factory.mktemp("sam") / "tiny_sam.pt")


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    """ATELIER_HOME pointing at an empty folder: no SAM weights in the cache."""
    home = tmp_path / "atelier-home"
    home.mkdir()
    monkeypatch.setenv("ATELIER_HOME", str(home))
    return home
