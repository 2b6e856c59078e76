"""`atelier restyle` end to end on the tiny ResNet CLIP: the GLB, its style PNG and the report; bad input as
one readable line, exit 2 and nothing written."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from backend.cli import main
from backend.geometry.glb import read_accessor, read_glb
from backend.geometry.primitives import icosphere

TINY = ["--quality", "draft", "--clip", "tiny-rn", "--device", "cpu", "--texture-size", "64"]


@pytest.fixture()
def sphere_obj(tmp_path: Path) -> Path:
    mesh = icosphere(1)
    path = tmp_path / "sphere.obj"
    trimesh.Trimesh(mesh.vertices * 4.0, mesh.faces, process=False).export(path)
    return path


@pytest.fixture()
def styles(tmp_path: Path) -> list[Path]:
    """Two style images: blue stripes and red dots on cream."""
    stripes = np.full((32, 32, 3), (230, 220, 200), np.uint8)
    stripes[(np.arange(32) // 4) % 2 == 0] = (40, 60, 160)
    y, x = np.mgrid[:32, :32] % 8
    dots = np.full((32, 32, 3), (230, 220, 200), np.uint8)
    dots[(y - 3.5) ** 2 + (x - 3.5) ** 2 < 6] = (200, 30, 30)
    paths = [tmp_path / "stripes.png", tmp_path / "dots.png"]
    for path, pixels in zip(paths, (stripes, dots)):
        Image.fromarray(pixels).save(path)
    return paths


def test_restyle_writes_the_glb_the_style_png_and_the_report(tmp_path, sphere_obj, styles, capsys):
    out, report = tmp_path / "out.glb", tmp_path / "r.json"
    code = main(["restyle", str(sphere_obj), "--style", *map(str, styles), "--steps", "2", *TINY, "--seed", "1",
                 "--out", str(out), "--report", str(report)])
    assert code == 0
    data = json.loads(report.read_text())
    for key in ("command", "seconds", "device", "renderer", "loss_first", "loss_last", "steps", "palette"):
        assert key in data, key
    assert data["command"] == "restyle" and data["steps"] == 2 and data["device"] == "cpu"
    assert data["renderer"] == "torch" and data["clip"] == "tiny-rn" and data["styles"] == 2
    assert isinstance(data["loss_first"], float) and isinstance(data["loss_last"], float)
    assert data["palette_source"] == "auto" and 1 <= len(data["palette"]) <= 5
    assert len(data["neighbour_share"]) == 2 and data["unwrapped"] is True
    # The OBJ has no UVs: the user is told it was unwrapped.
    assert "unwrapped automatically" in capsys.readouterr().err

    style_png = tmp_path / "out_style.png"
    assert data["style_texture"] == str(style_png) and Image.open(style_png).size == (64, 64)
    document, binary = read_glb(out.read_bytes())
    primitive = document["meshes"][0]["primitives"][0]
    assert "TEXCOORD_0" in primitive["attributes"]
    assert "baseColorTexture" in document["materials"][0]["pbrMetallicRoughness"]
    view = document["bufferViews"][document["images"][0]["bufferView"]]
    start = view.get("byteOffset", 0)
    assert Image.open(io.BytesIO(binary[start:start + view["byteLength"]])).size == (64, 64)
    positions = read_accessor(document, binary, primitive["attributes"]["POSITION"])
    assert np.abs(np.linalg.norm(positions, axis=1) - 4.0).max() < 1e-5, "written in the source's frame"


def test_a_user_palette_is_reported_as_such(tmp_path, sphere_obj, styles):
    out, report = tmp_path / "out.glb", tmp_path / "r.json"
    code = main(["restyle", str(sphere_obj), "--style", str(styles[0]), "--steps", "1", *TINY,
                 "--palette", "#ff0000,#00ff00", "--out", str(out), "--report", str(report)])
    assert code == 0
    data = json.loads(report.read_text())
    assert data["palette_source"] == "user" and data["palette"] == ["#ff0000", "#00ff00"]


def test_palette_weight_zero_turns_the_palette_term_off(tmp_path, sphere_obj, styles):
    report = tmp_path / "r.json"
    code = main(["restyle", str(sphere_obj), "--style", str(styles[0]), "--steps", "1", *TINY,
                 "--palette-weight", "0", "--out", str(tmp_path / "o.glb"), "--report", str(report)])
    assert code == 0 and json.loads(report.read_text())["palette_source"] == "none"


def write_text_png(tmp_path: Path) -> Path:
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n")
    return path


def write_one_pixel(tmp_path: Path) -> Path:
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (255, 0, 0)).save(path)
    return path


def write_points_obj(tmp_path: Path) -> Path:
    path = tmp_path / "points.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    return path


@pytest.mark.parametrize("make_style, extra, make_mesh, message", [
    (lambda t: t / "missing.png", [], None, "missing.png does not exist"),
    (write_text_png, [], None, "notes.png is not an image that can be read"),
    (write_one_pixel, [], None, "dot.png is 1x1 pixels; it needs at least 8x8"),
    (None, ["--palette", "#zzz"], None, "palette colour 1 of 1 '#zzz' is not a hex colour"),
    (None, ["--palette", "red,"], None, "palette colour 1 of 2 'red' is not a hex colour"),
    (None, ["--palette", "#ff0000,"], None, "palette colour 2 of 2 is empty"),
    (None, ["--steps", "0"], None, "steps must be an integer in [1, 100000]"),
    (None, ["--texture-size", "8"], None, "--texture-size must be an integer in [64, 4096], got 8"),
    (None, ["--palette-weight", "-1"], None, "--palette-weight must be a number in [0.0, 1000000.0], got -1.0"),
    (None, [], write_points_obj, "points.obj: the file contains no triangles"),
])
def test_restyle_bad_input_is_one_readable_line(make_style, extra, make_mesh, message, sphere_obj, styles,
                                               tmp_path, capsys):
    style = str(make_style(tmp_path)) if make_style else str(styles[0])
    mesh = str(make_mesh(tmp_path)) if make_mesh else str(sphere_obj)
    out = tmp_path / "o.glb"
    code = main(["restyle", mesh, "--style", style, "--steps", "1", *TINY, *extra, "--out", str(out),
                 "--report", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("atelier restyle: error: ") and message in err and " — " in err  # message — hint
    assert not out.exists() and not (tmp_path / "o_style.png").exists() and not (tmp_path / "r.json").exists()


def test_restyle_missing_weights_names_rn50_and_the_fix(sphere_obj, styles, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ATELIER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    out = tmp_path / "o.glb"
    code = main(["restyle", str(sphere_obj), "--style", str(styles[0]), "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "RN50" in err and "atelier models pull" in err and not out.exists()
