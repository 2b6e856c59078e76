"""`atelier models list` and `doctor`: the shipped domain CLIP and generator are listed as shipped (or missing, with
the command that trains them), and columns fit any name."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from backend.cli import main
from backend.generate import shipped as shipped_generator
from backend.models import domain
from backend.models.catalogue import CATALOGUE


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, sub in (("ATELIER_HOME", "atelier"), ("HF_HOME", "hf"), ("HF_HUB_CACHE", "hf/hub"),
                      ("XDG_CACHE_HOME", "xdg"), ("HOME", "home")):
        monkeypatch.setenv(name, str(tmp_path / sub))
    return tmp_path


def _listing(tmp_path: Path, capsys, *argv: str) -> tuple[list[str], dict]:
    report = tmp_path / "report.json"
    capsys.readouterr()
    assert main([*argv, "--report", str(report)]) == 0
    return capsys.readouterr().out.splitlines(), json.loads(report.read_text())


def _starts(lines: list[str], rows: list[dict]) -> list[tuple[int, int, int]]:
    """Per row: where its name starts, where its size ends and where its licence starts in its printed line."""
    found = []
    for line, row in zip(lines, rows):
        name = line.index(f" {row['name']} ") + 1
        size_end = line.index(row["size_human"], name + len(row["name"])) + len(row["size_human"])
        licence = line.index(row["licence"], size_end)
        found.append((name, size_end, licence))
    return found


def test_models_list_shows_the_shipped_domain_clip(empty_caches: Path, capsys):
    lines, report = _listing(empty_caches, capsys, "models", "list")
    shipped, generator = report["shipped"]
    assert generator["name"] == "generator" and generator["kind"] == "generator"
    assert shipped["name"] == "domain" and shipped["present"] is True and shipped["status"] == "shipped"
    assert shipped["size"] == domain.DOMAIN_WEIGHTS.stat().st_size > 1_000_000
    assert shipped["licence"] == "MIT" and shipped["path"] == str(domain.DOMAIN_WEIGHTS)
    assert lines[0].split()[:4] == ["shipped", "domain", *shipped["size_human"].split()]
    assert "MIT" in lines[0] and "--clip domain" in lines[0]
    # The add-on's weights panel reads "models": the catalogue, where every name can be pulled or imported.
    assert {m["name"] for m in report["models"]} == set(CATALOGUE)


def test_models_list_columns_follow_the_longest_cells(empty_caches: Path, capsys, monkeypatch: pytest.MonkeyPatch):
    long_name = "sam_vit_b_with_a_name_longer_than_any_column_was"
    monkeypatch.setitem(CATALOGUE, long_name, dataclasses.replace(CATALOGUE["sam_vit_b"], name=long_name,
                                                                  licence="unknown: see the model card"))
    lines, report = _listing(empty_caches, capsys, "models", "list")
    rows = report["shipped"] + report["models"]
    assert len(lines) == len(rows) and long_name in {r["name"] for r in rows}
    columns = _starts(lines, rows)
    assert len(set(columns)) == 1, "\n".join(lines)
    name_start, size_end, licence_start = columns[0]
    assert size_end - name_start > len(long_name)  # the name column grew to fit it
    assert all(line[name_start - 2:name_start] == "  " for line in lines)  # and never touches the status


def test_models_list_says_when_the_shipped_file_is_gone(empty_caches: Path, capsys, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(domain, "DOMAIN_WEIGHTS", empty_caches / "deleted" / "domain_clip.pt")
    lines, report = _listing(empty_caches, capsys, "models", "list")
    row, _ = report["shipped"]
    assert row["present"] is False and row["status"] == "missing" and row["path"] is None
    assert lines[0].startswith("missing  domain") and "python build.py domain-clip" in lines[0]


def test_models_list_shows_the_shipped_generator(empty_caches: Path, capsys, monkeypatch: pytest.MonkeyPatch):
    weights = empty_caches / "weights" / "generator_domain.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"g" * 3_000_000)  # the listing reads the size only, never the file
    monkeypatch.setattr(shipped_generator, "SHIPPED_GENERATOR", weights)
    lines, report = _listing(empty_caches, capsys, "models", "list")
    _, row = report["shipped"]
    assert row["name"] == "generator" and row["present"] is True and row["status"] == "shipped"
    assert row["size"] == 3_000_000 and row["path"] == str(weights) and row["licence"] == "MIT"
    assert lines[1].split()[:4] == ["shipped", "generator", *row["size_human"].split()]
    assert "python build.py generator" in lines[1] and "domain CLIP" not in lines[1]


def test_models_list_says_how_to_train_a_missing_shipped_generator(empty_caches: Path, capsys,
                                                                   monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(shipped_generator, "SHIPPED_GENERATOR", empty_caches / "none" / "generator_domain.pt")
    lines, report = _listing(empty_caches, capsys, "models", "list")
    _, row = report["shipped"]
    assert row["present"] is False and row["status"] == "missing" and row["path"] is None and row["size"] == 0
    assert lines[1].startswith("missing  generator") and "run `python build.py generator`" in lines[1]
    assert "the text-to-shape generator trained on the procedural world with the domain CLIP" in lines[1]


def test_doctor_lists_the_shipped_weights_in_the_same_columns(empty_caches: Path, capsys):
    lines, report = _listing(empty_caches, capsys, "doctor", "--device", "cpu")
    table = lines[lines.index("weights:") + 1:]
    rows = report["shipped"] + report["models"]
    assert len(table) == len(rows) and table[0].split()[:2] == ["shipped", "domain"]
    assert table[1].split()[1] == "generator"
    assert len(set(_starts(table, rows))) == 1, "\n".join(table)
