"""Fixtures for backend.models: every cache the weights manager reads, pointed at an empty temp dir."""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
import torch

from backend.models import release_all


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME, ATELIER_HOME, HF_HOME, HF_HUB_CACHE and XDG_CACHE_HOME all under `tmp_path`; no offline flag."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))  # Path.home() on Windows
    monkeypatch.setenv("ATELIER_HOME", str(tmp_path / "atelier"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def fresh_clip_cache():
    """Empties load_clip's model cache before and after a test module."""
    release_all()
    yield
    release_all()


@pytest.fixture(scope="session")
def small_arch_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(arch, file): a seeded random state dict of ViT-S-32-alt, the smallest standard open_clip CLIP (43 M)."""
    arch = "ViT-S-32-alt"
    path = tmp_path_factory.mktemp("weights") / "vit_s_32_alt.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = open_clip.CLIP(**open_clip.get_model_config(arch))
    torch.save(model.state_dict(), path)
    return arch, path


@pytest.fixture
def place_hf_file():
    """`place_hf_file(hub, repo, filename, data)` writes a file where huggingface_hub's cache keeps it."""
    return _place_hf_file


def _place_hf_file(hub: Path, repo: str, filename: str, data: bytes = b"fake weights") -> Path:
    commit = "0" * 40
    repo_dir = hub / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    path = repo_dir / "snapshots" / commit / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
