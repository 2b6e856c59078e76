"""The `stylize` job on the real server: progress with loss, ETA and previews, the GLB and Blender-frame
arrays in the submitted vertex order, cancel, bad params."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image
from server_helpers import cube_payload

from backend.geometry.glb import read_glb
from backend.geometry.mesh import gltf_to_blender
from backend.geometry.normals import vertex_normals
from backend.geometry.png import encode_png
from backend.geometry.primitives import textured_cube
from backend.server.arrays import from_numpy, to_numpy
from shared_protocol import Accepted, Cancel, Error, MeshPayload, Progress, Result, Submit

pytestmark = pytest.mark.timeout(120)

TINY = {"clip": "tiny", "quality": "draft"}


def run_job(client, submit: Submit, timeout: float = 90.0) -> list:
    client.send(submit)
    return list(client.job_messages(submit.job, timeout=timeout))


def test_stylize_streams_progress_and_returns_glb_and_arrays(client):
    params = {**TINY, "prompt": "a red box", "steps": 3, "preview_every": 1, "seed": 3}
    msgs = run_job(client, Submit(job="s1", kind="stylize", params=params, mesh=cube_payload()))
    assert msgs[0] == Accepted(job="s1", position=0)
    result = msgs[-1]
    assert isinstance(result, Result), result
    progress = [m for m in msgs if isinstance(m, Progress) and m.stage == "stylize"]
    assert progress and (progress[-1].step, progress[-1].total) == (3, 3)
    assert all("loss" in p.metrics and "eta_s" in p.metrics for p in progress)
    assert progress[-1].eta_s is not None
    previews = [p.preview for p in progress if p.preview is not None]
    assert previews and np.asarray(Image.open(io.BytesIO(previews[-1]))).shape == (64, 64, 3)

    fields = result.fields
    assert fields["steps"] == 3 and fields["subdivided"] is False and fields["clip"] == "tiny"
    assert isinstance(fields["loss_first"], float) and isinstance(fields["loss_last"], float)
    document, _ = read_glb(result.blobs["mesh"])
    assert document["meshes"][0]["extras"]["targetNames"] == ["Text2Mesh"]
    colors, displacement = to_numpy(result.arrays["colors"]), to_numpy(result.arrays["displacement"])
    assert colors.shape == displacement.shape == (8, 3) and colors.dtype == np.float32
    # In Blender's frame, each displacement is along its vertex's (area-weighted) normal.
    payload = cube_payload()
    normals = vertex_normals(to_numpy(payload.vertices), to_numpy(payload.faces))
    assert np.abs(np.cross(displacement, normals)).max() < 1e-6
    assert np.abs(displacement).max() <= fields["max_displacement"] + 1e-7


def welded_textured_cube() -> MeshPayload:
    """The textured cube as Blender sends it: 8 vertices, UVs per face corner (split into 24 by the backend)."""
    mesh = textured_cube()
    unique, inverse = np.unique(mesh.vertices, axis=0, return_inverse=True)
    corner_uv = mesh.uv[mesh.faces.reshape(-1)]
    return MeshPayload(vertices=from_numpy(gltf_to_blender(unique)),
                       faces=from_numpy(inverse.reshape(-1)[mesh.faces].astype(np.int32)),
                       uv=from_numpy(np.stack([corner_uv[:, 0], 1 - corner_uv[:, 1]], 1).astype(np.float32)),
                       uv_domain="corner", texture=encode_png(mesh.texture))


def test_split_vertices_map_back_to_the_submitted_ones(client):
    payload = welded_textured_cube()
    params = {**TINY, "prompt": "a wooden box", "steps": 2, "bake_texture": True, "texture_size": 64}
    result = run_job(client, Submit(job="s2", kind="stylize", params=params, mesh=payload))[-1]
    assert isinstance(result, Result), result
    assert to_numpy(result.arrays["colors"]).shape == (8, 3) and result.fields["vertices"] == 24
    document, _ = read_glb(result.blobs["mesh"])
    assert document["images"] and "COLOR_0" not in document["meshes"][0]["primitives"][0]["attributes"]


def test_subdivided_result_sends_the_new_mesh(client):
    params = {**TINY, "prompt": "a box", "steps": 1, "subdivide": True, "subdivide_vertices": 300}
    result = run_job(client, Submit(job="s3", kind="stylize", params=params, mesh=cube_payload()))[-1]
    assert isinstance(result, Result), result
    assert result.fields["subdivided"] is True and result.fields["vertices"] >= 300
    n = result.fields["vertices"]
    assert to_numpy(result.arrays["vertices"]).shape == (n, 3) and to_numpy(result.arrays["colors"]).shape == (n, 3)
    assert to_numpy(result.arrays["faces"]).shape == (result.fields["faces"], 3)


def test_cancel_a_running_stylize(client):
    client.send(Submit(job="long", kind="stylize", params={**TINY, "prompt": "a box", "steps": 100_000},
                       mesh=cube_payload()))
    first = next(m for m in client.job_messages("long", timeout=60) if isinstance(m, Progress) and m.stage == "stylize")
    started = time.monotonic()
    client.send(Cancel(job="long"))
    tail = list(client.job_messages("long", timeout=30))
    assert isinstance(tail[-1], Error) and tail[-1].code == "cancelled"
    assert max([m.step for m in tail if isinstance(m, Progress)], default=first.step) < 100_000
    assert time.monotonic() - started < 10.0


@pytest.mark.parametrize("params, words", [
    ({"clip": "tiny"}, "param 'prompt' is missing"),
    ({"clip": "tiny", "prompt": "  "}, "the prompt is empty"),
    ({"clip": "tiny", "prompt": "x" * 501}, "more than 500"),
    ({"clip": "tiny", "prompt": "a box", "steps": 0}, "'steps' must be an integer in [1, 100000]"),
    ({"clip": "tiny", "prompt": "a box", "quality": "ultra"}, "'quality' must be one of draft, standard, high"),
    ({"clip": "tiny", "prompt": "a box", "subdivide": "yes"}, "'subdivide' must be true or false"),
    ({"clip": "tiny", "prompt": "a box", "style": "x"}, "no param 'style'"),
])
def test_stylize_rejects_bad_params(client, params, words):
    error = run_job(client, Submit(job="bad", kind="stylize", params=params, mesh=cube_payload()))[-1]
    assert isinstance(error, Error) and error.code == "invalid_input" and words in error.message and error.hint


def test_stylize_needs_a_mesh_and_existing_weights(client, tmp_path):
    error = run_job(client, Submit(job="nomesh", kind="stylize", params={"prompt": "a box", "clip": "tiny"}))[-1]
    assert error.code == "invalid_input" and "needs a mesh" in error.message
    missing = str(tmp_path / "no_such_clip.pt")
    error = run_job(client, Submit(job="noweights", kind="stylize", params={"prompt": "a box", "clip": missing},
                                   mesh=cube_payload()))[-1]
    assert isinstance(error, Error) and "does not exist" in error.message and error.hint


@pytest.mark.parametrize("content", [b"root:x:0:0:root:/root:/bin/bash\n", bytes(range(256)) * 8, b""])
def test_a_junk_clip_file_is_invalid_input_and_the_server_keeps_serving(client, tmp_path, content):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(content)
    error = run_job(client, Submit(job="junkclip", kind="stylize", params={"prompt": "a box", "clip": str(junk)},
                                   mesh=cube_payload()))[-1]
    assert isinstance(error, Error) and error.code == "invalid_input", error
    assert str(junk) in error.message and error.hint
    done = run_job(client, Submit(job="after", kind="stylize", params={"prompt": "a box", "clip": "tiny", "steps": 1,
                                                                       "quality": "draft"}, mesh=cube_payload()))[-1]
    assert isinstance(done, Result)
