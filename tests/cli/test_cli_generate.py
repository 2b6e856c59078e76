"""`atelier train-generator` and `atelier generate` end to end on the tiny CLIP: the checkpoint, N sample GLBs, the
report's fields; bad input as one readable line, exit 2, nothing written."""

from __future__ import annotations

import json

import pytest
import trimesh

from backend.cli import main
from backend.generate.generator import load_generator
from backend.geometry.glb import read_glb

GEN = ["--device", "cpu", "--resolution", "32", "--threshold", "0.3"]


def test_train_generator_reports_the_library_and_writes_a_loadable_checkpoint(tiny_generator, shape_library):
    generator = load_generator(tiny_generator)
    assert generator.clip_spec == "tiny" and generator.library["shapes"] == 6
    assert generator.library["root"] == str(shape_library)
    assert generator.train["autoencoder_steps"] == 40 and generator.train["flow_steps"] == 40


def test_generate_writes_n_samples_and_the_report(tiny_generator, tmp_path):
    report = tmp_path / "report.json"
    out = tmp_path / "shape.glb"
    code = main(["generate", "--prompt", "a chair", "--checkpoint", str(tiny_generator), "--out", str(out),
                 "--samples", "2", "--refine", "1", "--report", str(report), *GEN])
    assert code == 0
    data = json.loads(report.read_text())
    assert data["command"] == "generate" and data["samples"] == 2 and data["clip"] == "tiny"
    assert data["device"] == "cpu" and data["seconds"] > 0
    assert isinstance(data["clip_score_before"], float) and isinstance(data["clip_score_after"], float)
    assert data["outputs"] == [str(tmp_path / "shape_0.glb"), str(tmp_path / "shape_1.glb")]
    # The outputs are named in rank order: shape_0 has the best CLIP score (after refinement).
    assert data["ranked_by"] == "clip_score_after" and data["rank"] == [0, 1] and sorted(data["sample"]) == [0, 1]
    assert data["clip_scores_after"] == sorted(data["clip_scores_after"], reverse=True)
    assert [c["smooth_iterations"] for c in data["cleanup"]] == [10, 10]
    for path, faces in zip(data["outputs"], data["faces"]):
        mesh = trimesh.load(path, force="mesh")
        assert len(mesh.faces) == faces and mesh.is_watertight


def test_generate_with_a_style_colours_the_shape(tiny_generator, tmp_path):
    out = tmp_path / "oak.glb"
    report = tmp_path / "r.json"
    assert main(["generate", "--prompt", "a chair made of oak", "--style", "auto", "--style-steps", "2",
                 "--checkpoint", str(tiny_generator), "--out", str(out), "--report", str(report), *GEN]) == 0
    data = json.loads(report.read_text())
    assert data["prompt"] == "a chair" and data["style"] == "a chair made of oak" and len(data["style_loss_last"]) == 1
    document, _ = read_glb(out.read_bytes())
    primitive = document["meshes"][0]["primitives"][0]
    assert "COLOR_0" in primitive["attributes"] and primitive["targets"]  # colours and the Text2Mesh shape key


def test_training_replaces_a_stale_parts_folder_when_not_resuming(shape_library, tmp_path, tiny_generator_flags):
    out = tmp_path / "g.pt"
    report = tmp_path / "r.json"
    parts = tmp_path / "g.pt.parts"
    parts.mkdir()
    # A stale parts folder from another run is replaced when not resuming.
    (parts / "library.json").write_text("{}")
    assert main(["train-generator", "--library", str(shape_library), "--out", str(out), "--report", str(report),
                 *tiny_generator_flags]) == 0
    assert json.loads(report.read_text())["resumed"] == [] and not parts.exists()


@pytest.mark.parametrize("args, words", [
    (["--prompt", "  "], "the prompt is empty"),
    (["--samples", "0"], "samples must be in [1, 16]"),
    (["--resolution", "16"], "--resolution must be in [32, 256]"),
    (["--threshold", "1.5"], "threshold is a probability"),
    (["--style", " "], "--style is empty"),
    (["--clip", "tiny-rn"], "trained with the CLIP 'tiny', not 'tiny-rn'"),
])
def test_generate_bad_input_is_one_line(tiny_generator, tmp_path, capsys, args, words):
    out = tmp_path / "x.glb"
    base = {"--prompt": "a chair", "--checkpoint": str(tiny_generator)}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    argv = ["generate", "--out", str(out), "--device", "cpu", "--resolution", "32"]
    for flag, value in base.items():
        argv += [flag, value]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not out.exists()


def test_an_untrained_or_wrong_checkpoint_and_an_empty_mesh_are_one_line(tiny_generator, tmp_path, capsys):
    out = tmp_path / "x.glb"
    bad = tmp_path / "ae.pt"
    bad.write_bytes(b"junk")
    for checkpoint, words in ((tmp_path / "none.pt", "no generator checkpoint"), (bad, "not a generator checkpoint")):
        assert main(["generate", "--prompt", "a chair", "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
        assert words in capsys.readouterr().err
    assert main(["generate", "--prompt", "a chair", "--checkpoint", str(tiny_generator), "--out", str(out),
                 "--device", "cpu", "--resolution", "32", "--threshold", "0.999"]) == 2
    err = capsys.readouterr().err
    assert "the decoded shape is empty" in err and "lower the threshold" in err
    assert not out.exists()


def test_train_generator_bad_input(tmp_path, capsys):
    assert main(["train-generator", "--library", str(tmp_path / "nowhere"), "--out", str(tmp_path / "g.pt"),
                 "--clip", "tiny"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["train-generator", "--library", str(tmp_path), "--out", str(tmp_path / "g.pt"), "--clip", "tiny",
                 "--batch", "1"]) == 2
    assert "--batch must be >= 2" in capsys.readouterr().err


def test_training_reuses_a_retrieval_index_of_the_same_library(shape_library, tmp_path, tiny_generator_flags):
    db = tmp_path / "db"
    assert main(["index", str(shape_library), "--db", str(db), "--clip", "tiny", "--device", "cpu"]) == 0
    report = tmp_path / "r.json"
    assert main(["train-generator", "--library", str(shape_library), "--out", str(tmp_path / "g.pt"), "--db", str(db),
                 "--report", str(report), *tiny_generator_flags]) == 0
    data = json.loads(report.read_text())
    assert data["conditions"] == "index" and data["notes"] == []
    assert load_generator(tmp_path / "g.pt").train["views"] == 6  # the index's views, not --views 2
    # Another CLIP's index is not reused: the views are rendered, and the run says why.
    assert main(["train-generator", "--library", str(shape_library), "--out", str(tmp_path / "h.pt"), "--db", str(db),
                 "--report", str(report), *tiny_generator_flags, "--clip", "tiny-rn"]) == 0
    data = json.loads(report.read_text())
    assert data["conditions"] == "rendered" and "clip:tiny, not clip:tiny-rn" in data["notes"][0]


def test_generate_from_a_picture(tiny_generator, shape_library, tmp_path):
    from backend.geometry.png import encode_png
    from backend.world.shape import make_shape
    from backend.world.views import render_views

    picture = tmp_path / "chair.png"
    view = render_views(make_shape(5, "chair"), 1, 64)[0]
    picture.write_bytes(encode_png((view.clamp(0, 1) * 255).round().byte().numpy()))
    report = tmp_path / "r.json"
    assert main(["generate", "--image", str(picture), "--checkpoint", str(tiny_generator), "--out",
                 str(tmp_path / "x.glb"), "--report", str(report), *GEN]) == 0
    data = json.loads(report.read_text())
    assert data["image"] == str(picture) and data["prompt"] is None and (tmp_path / "x.glb").is_file()
