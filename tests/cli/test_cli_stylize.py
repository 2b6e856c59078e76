"""`atelier stylize` end to end on the tiny CLIP: the GLB and the report; bad input as one readable line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from backend.cli import main
from backend.geometry.glb import read_accessor, read_glb
from backend.geometry.primitives import icosphere


@pytest.fixture()
def sphere_obj(tmp_path: Path) -> Path:
    mesh = icosphere(1)
    path = tmp_path / "sphere.obj"
    trimesh.Trimesh(mesh.vertices * 4.0, mesh.faces, process=False).export(path)
    return path


def test_stylize_writes_a_glb_and_the_report(tmp_path: Path, sphere_obj: Path):
    out, report = tmp_path / "out.glb", tmp_path / "report.json"
    code = main(["stylize", str(sphere_obj), "--prompt", "a red ball", "--steps", "2", "--quality", "draft",
                 "--clip", "tiny", "--device", "cpu", "--seed", "1", "--out", str(out), "--report", str(report)])
    assert code == 0
    data = json.loads(report.read_text())
    for key in ("command", "seconds", "device", "renderer", "loss_first", "loss_last", "steps"):
        assert key in data, key
    assert data["command"] == "stylize" and data["steps"] == 2 and data["device"] == "cpu"
    assert data["renderer"] == "torch" and data["clip"] == "tiny" and data["vertices"] == 42
    assert isinstance(data["loss_first"], float) and -1.0 <= data["loss_last"] <= 1.0
    document, binary = read_glb(out.read_bytes())
    primitive = document["meshes"][0]["primitives"][0]
    assert document["meshes"][0]["extras"]["targetNames"] == ["Text2Mesh"]
    positions = read_accessor(document, binary, primitive["attributes"]["POSITION"])
    assert np.abs(np.linalg.norm(positions, axis=1) - 4.0).max() < 1e-5, "written in the source's frame"


@pytest.mark.parametrize("argv, message", [
    (["--prompt", "", "--steps", "2"], "the prompt is empty"),
    (["--prompt", "a ball", "--steps", "0"], "steps must be an integer in [1, 100000]"),
    (["--prompt", "x" * 501], "more than 500"),
])
def test_stylize_bad_input_is_one_readable_line(argv, message, sphere_obj, tmp_path, capsys):
    code = main(["stylize", str(sphere_obj), "--out", str(tmp_path / "o.glb"), "--clip", "tiny", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert message in err and not (tmp_path / "o.glb").exists()


def test_stylize_missing_weights_names_the_fix(sphere_obj, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ATELIER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code = main(["stylize", str(sphere_obj), "--prompt", "a ball", "--out", str(tmp_path / "o.glb"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "ViT-B-32" in err and "atelier models pull" in err
