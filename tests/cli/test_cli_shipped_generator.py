"""The shipped generator as the default: `atelier generate` without --checkpoint loads it (here a tiny generator
trained with the domain CLIP stands in for backend/models/weights/generator_domain.pt), $ATELIER_GENERATOR names
another default, and a missing default is one line naming the file and `python build.py generator`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.cli import main
from backend.errors import WeightsMissingError
from backend.generate import shipped
from backend.generate.shipped import GENERATOR_ENV, SHIPPED_GENERATOR, resolve_generator

GEN = ["--device", "cpu", "--resolution", "32", "--threshold", "0.3"]


@pytest.fixture(scope="module")
def domain_generator(shape_library, tiny_generator_flags, tmp_path_factory) -> Path:
    """A tiny generator trained with the domain CLIP, as the shipped one is (plumbing only: seconds)."""
    flags = list(tiny_generator_flags)
    flags[flags.index("--clip") + 1] = "domain"
    out = tmp_path_factory.mktemp("shipped") / "generator_domain.pt"
    assert main(["train-generator", "--library", str(shape_library), "--out", str(out), *flags]) == 0
    return out


@pytest.fixture
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GENERATOR_ENV, raising=False)


def test_the_shipped_generator_lives_with_the_shipped_weights():
    assert SHIPPED_GENERATOR.name == "generator_domain.pt"
    assert SHIPPED_GENERATOR.parent == Path(__file__).resolve().parents[2] / "backend" / "models" / "weights"


def test_resolve_generator_prefers_a_named_checkpoint_then_the_env_then_the_shipped_file(
        domain_generator, tmp_path, monkeypatch, no_override):
    monkeypatch.setattr(shipped, "SHIPPED_GENERATOR", domain_generator)
    assert resolve_generator(" /srv/mine.pt ") == Path("/srv/mine.pt")  # named: load_generator checks it
    for unnamed in (None, "", "   "):
        assert resolve_generator(unnamed) == domain_generator
    other = tmp_path / "other.pt"
    other.write_bytes(domain_generator.read_bytes())
    monkeypatch.setenv(GENERATOR_ENV, f" {other} ")
    assert resolve_generator(None) == other
    monkeypatch.setenv(GENERATOR_ENV, "  ")  # blank: as if unset
    assert resolve_generator(None) == domain_generator


def test_a_missing_default_names_the_file_and_the_fix(tmp_path, monkeypatch, no_override):
    gone = tmp_path / "weights" / "generator_domain.pt"
    monkeypatch.setattr(shipped, "SHIPPED_GENERATOR", gone)
    with pytest.raises(WeightsMissingError) as caught:
        resolve_generator(None)
    assert f"the shipped generator {gone} is missing" in caught.value.message
    assert "python build.py generator" in caught.value.hint and caught.value.code == "weights_missing"
    monkeypatch.setenv(GENERATOR_ENV, str(tmp_path / "nope.pt"))
    with pytest.raises(WeightsMissingError, match=r"\$ATELIER_GENERATOR names .*nope.pt, which is not a file"):
        resolve_generator("")


def test_generate_without_a_checkpoint_uses_the_shipped_generator(domain_generator, tmp_path, monkeypatch, capsys,
                                                                  no_override):
    monkeypatch.setattr(shipped, "SHIPPED_GENERATOR", domain_generator)
    report = tmp_path / "report.json"
    out = tmp_path / "chair.glb"
    assert main(["generate", "--prompt", "a photo of a chair", "--out", str(out), "--report", str(report), *GEN]) == 0
    data = json.loads(report.read_text())
    assert data["clip"] == "domain" and data["samples"] == 1 and data["outputs"] == [str(out)]
    assert out.read_bytes()[:4] == b"glTF"


def test_generate_without_a_checkpoint_or_a_shipped_generator_is_one_line(tmp_path, monkeypatch, capsys, no_override):
    gone = tmp_path / "weights" / "generator_domain.pt"
    monkeypatch.setattr(shipped, "SHIPPED_GENERATOR", gone)
    out = tmp_path / "chair.glb"
    capsys.readouterr()
    assert main(["generate", "--prompt", "a chair", "--out", str(out), *GEN]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"the shipped generator {gone} is missing" in err[0], err
    assert "python build.py generator" in err[0] and not out.exists()
