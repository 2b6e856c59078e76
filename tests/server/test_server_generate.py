"""The `generate` job on the real server: N GLB samples with their CLIP scores, progress through refinement,
cancel, the default generator when no checkpoint is named, and bad input answered with a message and a hint while
the server keeps serving."""

from __future__ import annotations

import shutil
import time

import pytest
import trimesh
from server_helpers import start_server, status, stop_server

from backend.geometry.glb import read_glb
from backend.server.client import Client
from shared_protocol import Cancel, Error, Progress, Result, Submit

pytestmark = pytest.mark.timeout(300)

SMALL = {"resolution": 32, "threshold": 0.3}


def run_job(client, submit: Submit, timeout: float = 120.0) -> list:
    client.send(submit)
    return list(client.job_messages(submit.job, timeout=timeout))


def test_generate_returns_n_glb_samples_with_scores(client, tiny_generator):
    params = {**SMALL, "prompt": "a lamp", "checkpoint": str(tiny_generator), "samples": 2, "refine": 2, "seed": 3}
    msgs = run_job(client, Submit(job="g1", kind="generate", params=params))
    result = msgs[-1]
    assert isinstance(result, Result), result
    stages = [m.stage for m in msgs if isinstance(m, Progress)]
    assert stages[0] == "load" and "refine" in stages and stages[-1] == "sample"
    refine = [m for m in msgs if isinstance(m, Progress) and m.stage == "refine"]
    assert (refine[-1].step, refine[-1].total) == (4, 4) and "clip_score" in refine[-1].metrics
    fields = result.fields
    assert fields["samples"] == 2 and fields["clip"] == "tiny" and fields["refine"] == 2
    assert len(fields["clip_score_before"]) == 2 and len(fields["clip_score_after"]) == 2
    # Best first: the blobs run from the highest held-out-view CLIP score down, each with its draw and clean-up.
    assert fields["ranked_by"] == "clip_score_after" and fields["clip_score"] == fields["clip_score_after"]
    assert fields["clip_score"] == sorted(fields["clip_score"], reverse=True) and sorted(fields["sample"]) == [0, 1]
    assert [c["smooth_iterations"] for c in fields["cleanup"]] == [10, 10]
    assert all(c["pieces"] >= 1 and 0.0 <= c["largest_floating"] < 1.0 for c in fields["cleanup"])
    assert set(result.blobs) == {"mesh_0", "mesh_1"}
    for i in range(2):
        document, _ = read_glb(result.blobs[f"mesh_{i}"])
        assert document["asset"]["version"] == "2.0"
        mesh = trimesh.load(trimesh.util.wrap_as_stream(result.blobs[f"mesh_{i}"]), file_type="glb", force="mesh")
        assert len(mesh.faces) == fields["faces"][i] and mesh.is_watertight


def test_cancel_during_refinement_and_the_server_keeps_serving(client, tiny_generator):
    params = {**SMALL, "prompt": "a table", "checkpoint": str(tiny_generator), "refine": 500}
    client.send(Submit(job="long", kind="generate", params=params))
    next(m for m in client.job_messages("long", timeout=120) if isinstance(m, Progress) and m.stage == "refine")
    started = time.monotonic()
    client.send(Cancel(job="long"))
    tail = list(client.job_messages("long", timeout=60))
    assert isinstance(tail[-1], Error) and tail[-1].code == "cancelled"
    assert time.monotonic() - started < 30.0
    after = run_job(client, Submit(job="next", kind="generate",
                                   params={**SMALL, "prompt": "a table", "checkpoint": str(tiny_generator)}))[-1]
    assert isinstance(after, Result) and after.fields["samples"] == 1


@pytest.mark.parametrize("params, words", [
    ({"prompt": "  "}, "the prompt is empty"),
    ({"checkpoint": "/no/such/generator.pt"}, "no generator checkpoint at"),
    ({"clip": "tiny-rn"}, "trained with the CLIP 'tiny', not 'tiny-rn'"),
    ({"samples": 17}, "'samples' must be an integer in [1, 16]"),
    ({"resolution": 8}, "'resolution' must be an integer in [32, 256]"),
    ({"threshold": 0.99}, "the decoded shape is empty"),
    ({"style_quality": "ultra"}, "'style_quality' must be one of"),
    ({"size": 3}, "the generate job has no param 'size'"),
])
def test_generate_rejects_bad_input_and_keeps_serving(client, tiny_generator, params, words):
    base = {**SMALL, "prompt": "a chair", "checkpoint": str(tiny_generator)}
    error = run_job(client, Submit(job="bad", kind="generate", params={**base, **params}))[-1]
    assert isinstance(error, Error) and error.code == "invalid_input", error
    assert words in error.message and error.hint
    assert status(client).running is None


def test_a_job_without_a_checkpoint_loads_the_default_generator(tiny_generator, tmp_path, monkeypatch):
    # Its own server: the default is read from the server's environment ($ATELIER_GENERATOR stands in for the
    # shipped file, which this checkout may or may not hold).
    default = tmp_path / "default" / "generator.pt"
    monkeypatch.setenv("ATELIER_GENERATOR", str(default))
    running = start_server(tmp_path / "backend")
    try:
        with Client(running.endpoint) as c:
            params = {**SMALL, "prompt": "a chair"}
            error = run_job(c, Submit(job="none", kind="generate", params=params))[-1]
            assert isinstance(error, Error) and error.code == "weights_missing", error
            assert f"$ATELIER_GENERATOR names {default}" in error.message and "unset it" in error.hint
            default.parent.mkdir()
            shutil.copyfile(tiny_generator, default)
            for job, extra in (("unnamed", {}), ("blank", {"checkpoint": "  "})):
                result = run_job(c, Submit(job=job, kind="generate", params={**params, **extra}))[-1]
                assert isinstance(result, Result), result
                assert result.fields["clip"] == "tiny" and set(result.blobs) == {"mesh_0"}
            assert status(c).running is None
    finally:
        assert stop_server(running) == 0, running.stderr()


def picture() -> bytes:
    from backend.geometry.png import encode_png
    from backend.world.shape import make_shape
    from backend.world.views import render_views

    view = render_views(make_shape(5, "chair"), 1, 64)[0]
    return encode_png((view.clamp(0, 1) * 255).round().byte().numpy())


def test_generate_from_a_picture_with_refinement(client, tiny_generator):
    params = {**SMALL, "checkpoint": str(tiny_generator), "refine": 1}
    result = run_job(client, Submit(job="gi", kind="generate", params=params, blobs={"image": picture()}))[-1]
    assert isinstance(result, Result), result
    assert result.fields["condition"] == "image" and result.fields["prompt"] == "" and set(result.blobs) == {"mesh_0"}


@pytest.mark.parametrize("params, blobs, words", [
    ({"style": "auto"}, {"image": picture()}, "the 'auto' style splits a prompt"),
    ({}, {"image": b"not an image"}, "the shape picture is not an image"),
    ({}, {"image": picture(), "photo": picture()}, "the generate job takes no blob 'photo'"),
    ({"prompt": None}, {}, "'prompt'"),
])
def test_generate_rejects_bad_pictures(client, tiny_generator, params, blobs, words):
    base = {**SMALL, "checkpoint": str(tiny_generator)}
    merged = {k: v for k, v in {**base, **params}.items() if v is not None}
    error = run_job(client, Submit(job="badpic", kind="generate", params=merged, blobs=blobs))[-1]
    assert isinstance(error, Error) and error.code == "invalid_input", error
    assert words in error.message and error.hint
