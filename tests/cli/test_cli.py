"""The `atelier` command end to end (in-process `main`, and one real subprocess), with its reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from backend.cli import main
from backend.geometry.primitives import icosphere


@pytest.fixture()
def sphere_obj(tmp_path: Path) -> Path:
    mesh = icosphere(2)
    path = tmp_path / "sphere.obj"
    trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(path)
    return path


def test_render_writes_views_and_report(tmp_path: Path, sphere_obj: Path):
    report = tmp_path / "report.json"
    code = main(["render", str(sphere_obj), "--views", "3", "--size", "48", "--out", str(tmp_path / "views"),
                 "--device", "cpu", "--report", str(report)])
    assert code == 0
    images = sorted((tmp_path / "views").glob("view_*.png"))
    assert len(images) == 3
    pixels = np.asarray(Image.open(images[0]))
    assert pixels.shape == (48, 48, 3)
    assert (pixels.min(-1) < 200).sum() > 200, "the sphere should cover part of the view"
    data = json.loads(report.read_text())
    for key in ("command", "seconds", "device", "renderer", "views", "faces"):
        assert key in data
    assert data["command"] == "render" and data["renderer"] == "torch" and data["device"] == "cpu"
    assert data["faces"] == 320


@pytest.mark.parametrize(
    "argv, message",
    [
        (["render", "missing.obj", "--out", "x"], "missing.obj"),
        (["render", "{mesh}", "--views", "0", "--out", "x"], "--views must be between"),
        (["render", "{mesh}", "--size", "3", "--out", "x"], "--size must be between"),
        (["render", "{mesh}", "--out", "x", "--device", "tpu"], "unknown device"),
        (["models", "pull"], "needs a weights name"),
        (["models", "import", "ViT-B-32:openai"], "needs the path"),
    ],
)
def test_bad_input_is_one_readable_line(argv, message, sphere_obj, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main([a.replace("{mesh}", str(sphere_obj)) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert message in err


def test_models_list_and_doctor_report(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("ATELIER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    report = tmp_path / "models.json"
    assert main(["models", "list", "--report", str(report)]) == 0
    names = {m["name"]: m for m in json.loads(report.read_text())["models"]}
    assert "ViT-B-32:openai" in names and names["ViT-B-32:openai"]["present"] is False
    assert main(["doctor", "--device", "cpu", "--report", str(tmp_path / "doctor.json")]) == 0
    doctor = json.loads((tmp_path / "doctor.json").read_text())
    assert doctor["renderer"] == "torch" and doctor["device"] == "cpu" and "torch" in doctor


def test_keys_writes_a_server_and_client_pair(tmp_path: Path):
    assert main(["keys", str(tmp_path / "keys")]) == 0
    files = {p.name for p in (tmp_path / "keys").rglob("*") if p.is_file()}
    assert any("server" in f for f in files) and any("client" in f for f in files)


def test_console_script_runs_with_debug_traceback_only_on_request(tmp_path: Path):
    atelier = Path(sys.executable).parent / "atelier"
    proc = subprocess.run([str(atelier), "render", str(tmp_path / "nope.ply"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "nope.ply" in proc.stderr
    proc = subprocess.run([str(atelier), "render", str(tmp_path / "nope.ply"), "--out", str(tmp_path), "--debug"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
