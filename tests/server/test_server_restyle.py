"""The `restyle` job on the real server: progress with losses and previews, the textured GLB and the style
PNG, cancel, and every bad input answered with a message and a hint while the server keeps serving."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image
from server_helpers import cube_payload, status

from backend.geometry.glb import read_glb
from backend.geometry.png import encode_png
from backend.server.arrays import from_numpy
from shared_protocol import Accepted, Cancel, Error, MeshPayload, Progress, Result, Submit

pytestmark = pytest.mark.timeout(120)

TINY = {"clip": "tiny-rn", "quality": "draft", "texture_size": 64}
"""The tiny random ResNet CLIP (plumbing only) on the smallest texture the job takes."""


def stripes(side: int = 32) -> bytes:
    """Blue horizontal bands on cream, PNG bytes."""
    image = np.full((side, side, 3), (230, 220, 200), np.uint8)
    image[(np.arange(side) // 4) % 2 == 0] = (40, 60, 160)
    return encode_png(image)


def dots(side: int = 32) -> bytes:
    """Red dots on cream, PNG bytes."""
    y, x = np.mgrid[:side, :side] % 8
    image = np.full((side, side, 3), (230, 220, 200), np.uint8)
    image[(y - 3.5) ** 2 + (x - 3.5) ** 2 < 6] = (200, 30, 30)
    return encode_png(image)


STYLES = {"style_0": stripes(), "style_1": dots()}


def run_job(client, submit: Submit, timeout: float = 90.0) -> list:
    client.send(submit)
    return list(client.job_messages(submit.job, timeout=timeout))


def embedded_image(glb: bytes) -> np.ndarray:
    """The base colour map of the GLB's first material, decoded."""
    document, binary = read_glb(glb)
    texture = document["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"]["index"]
    view = document["bufferViews"][document["images"][document["textures"][texture]["source"]]["bufferView"]]
    start = view.get("byteOffset", 0)
    return np.asarray(Image.open(io.BytesIO(binary[start:start + view["byteLength"]])))


def test_restyle_streams_progress_and_returns_the_textured_glb_and_style_png(client):
    params = {**TINY, "steps": 3, "seed": 2}
    msgs = run_job(client, Submit(job="r1", kind="restyle", params=params, mesh=cube_payload(), blobs=STYLES))
    assert msgs[0] == Accepted(job="r1", position=0)
    result = msgs[-1]
    assert isinstance(result, Result), result
    progress = [m for m in msgs if isinstance(m, Progress) and m.stage == "restyle"]
    assert progress and (progress[-1].step, progress[-1].total) == (3, 3)
    assert all({"loss", "loss_style", "loss_content", "loss_palette"} <= set(p.metrics) for p in progress)
    previews = [p.preview for p in progress if p.preview is not None]
    assert previews and Image.open(io.BytesIO(previews[-1])).format == "PNG"

    fields = result.fields
    assert fields["steps"] == 3 and fields["styles"] == 2 and fields["clip"] == "tiny-rn"
    assert isinstance(fields["loss_first"], float) and isinstance(fields["loss_last"], float)
    assert fields["seconds"] > 0 and fields["texture_size"] == 64
    assert fields["palette_source"] == "auto" and 1 <= len(fields["palette"]) <= 5
    assert all(isinstance(c, str) and c.startswith("#") and len(c) == 7 for c in fields["palette"])
    share = fields["neighbour_share"]
    assert len(share) == 2 and abs(sum(share) - 1.0) < 1e-6
    # The cube is sent without UVs: it was unwrapped and painted on the plain base colour.
    assert fields["unwrapped"] is True and fields["base_source"] == "plain"

    assert set(result.blobs) == {"mesh", "style_texture"}
    document, _ = read_glb(result.blobs["mesh"])
    assert "TEXCOORD_0" in document["meshes"][0]["primitives"][0]["attributes"]
    assert embedded_image(result.blobs["mesh"]).shape[:2] == (64, 64)
    style = Image.open(io.BytesIO(result.blobs["style_texture"]))
    assert style.format == "PNG" and style.size == (64, 64)


def test_user_palette_over_the_server(client):
    params = {**TINY, "steps": 1, "palette": "#ff0000, 00f"}
    result = run_job(client, Submit(job="r2", kind="restyle", params=params, mesh=cube_payload(),
                                    blobs={"style_0": dots()}))[-1]
    assert isinstance(result, Result), result
    assert result.fields["palette_source"] == "user" and result.fields["palette"] == ["#ff0000", "#0000ff"]
    assert result.fields["neighbour_share"] == [1.0]


def test_cancel_a_running_restyle_and_the_server_keeps_serving(client):
    client.send(Submit(job="long", kind="restyle", params={**TINY, "steps": 100_000}, mesh=cube_payload(),
                       blobs=STYLES))
    first = next(m for m in client.job_messages("long", timeout=60) if isinstance(m, Progress) and m.stage == "restyle")
    started = time.monotonic()
    client.send(Cancel(job="long"))
    tail = list(client.job_messages("long", timeout=30))
    assert isinstance(tail[-1], Error) and tail[-1].code == "cancelled"
    assert max([m.step for m in tail if isinstance(m, Progress)], default=first.step) < 100_000
    # Cancel lands within a step (~0.2 s here); the bound is loose because the test machine's CPUs are shared.
    assert time.monotonic() - started < 30.0
    after = run_job(client, Submit(job="next", kind="restyle", params={**TINY, "steps": 1}, mesh=cube_payload(),
                                   blobs={"style_0": stripes()}))[-1]
    assert isinstance(after, Result) and after.fields["steps"] == 1


def test_eleven_styles_are_read_in_numeric_order(client):
    """style_10 follows style_9 (not style_1): no gap is reported and every image supplies a share."""
    blobs = {f"style_{i}": (stripes, dots)[i % 2]() for i in range(11)}
    result = run_job(client, Submit(job="r11", kind="restyle", params={**TINY, "steps": 1}, mesh=cube_payload(),
                                    blobs=blobs))[-1]
    assert isinstance(result, Result), result
    assert result.fields["styles"] == 11 and len(result.fields["neighbour_share"]) == 11


def faceless() -> MeshPayload:
    return MeshPayload(vertices=from_numpy(np.eye(3, dtype=np.float32)), faces=from_numpy(np.zeros((0, 3), np.int32)))


ONE_PIXEL = encode_png(np.zeros((1, 1, 3), np.uint8))


@pytest.mark.parametrize("params, blobs, mesh, words", [
    ({}, {}, cube_payload(), "needs at least one style image"),
    ({}, {"style_0": stripes(), "style_2": dots()}, cube_payload(),
     "unexpected blob names ['style_0', 'style_2']; expected ['style_0', 'style_1']"),
    ({}, {"style_0": stripes(), "photo": dots()}, cube_payload(), "unexpected blob names"),
    ({}, {"style_0": b"definitely not an image"}, cube_payload(), "the style image 0 is not an image"),
    ({}, {"style_0": b""}, cube_payload(), "the style image 0 is empty (0 bytes)"),
    ({}, {"style_0": stripes(), "style_1": ONE_PIXEL}, cube_payload(),
     "the style image 1 is 1x1 pixels; it needs at least 8x8"),
    ({"palette": "#zzz"}, STYLES, cube_payload(), "palette colour 1 of 1 '#zzz' is not a hex colour"),
    ({"palette": "#ff0000,"}, STYLES, cube_payload(), "palette colour 2 of 2 is empty"),
    ({"style_weight": 3}, STYLES, cube_payload(), "the restyle job has no param 'style_weight'"),
    ({"steps": 0}, STYLES, cube_payload(), "'steps' must be an integer in [1, 100000]"),
    ({"texture_size": 32}, STYLES, cube_payload(), "'texture_size' must be an integer in [64, 4096]"),
    ({"features": "resnet"}, STYLES, cube_payload(), "'features' must be one of clip, vgg16"),
    ({}, {f"style_{i}": stripes() for i in range(17)}, cube_payload(), "17 style images were given; at most 16"),
    ({}, STYLES, None, "the restyle job needs a mesh"),
    ({}, STYLES, faceless(), "the mesh has no faces"),
])
def test_restyle_rejects_bad_input_and_keeps_serving(client, params, blobs, mesh, words):
    error = run_job(client, Submit(job="bad", kind="restyle", params={**TINY, "steps": 1, **params}, mesh=mesh,
                                   blobs=blobs))[-1]
    assert isinstance(error, Error) and error.code == "invalid_input", error
    assert words in error.message and error.hint
    assert status(client).running is None


def test_missing_weights_name_the_fix(client, tmp_path):
    missing = str(tmp_path / "no_such_clip.pt")
    error = run_job(client, Submit(job="noweights", kind="restyle", params={**TINY, "steps": 1, "clip": missing},
                                   mesh=cube_payload(), blobs=STYLES))[-1]
    assert isinstance(error, Error) and "does not exist" in error.message and error.hint
