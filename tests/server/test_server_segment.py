"""The `segment` job on the real server (tiny CLIP, tiny random SAM: plumbing, not quality): progress, the mask and
RGBA cut-out PNGs at the photo's size, the report fields, the labelled superpixel fallback on a server without SAM
weights, point/box prompts, and every bad input answered with a message and a hint while the server keeps serving."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from server_helpers import start_server, status, stop_server

from backend.geometry.png import encode_png
from backend.server.client import Client
from backend.world.shape import make_shape
from backend.world.views import render_photo
from shared_protocol import Error, Progress, Result, Submit
from tests.segment.segment_helpers import write_tiny_sam

pytestmark = pytest.mark.timeout(180)

TINY = {"clip": "tiny", "relevance": "dense-clip"}
"""The tiny random CLIP's dense features as the relevance map."""
TINY_SAM = {"points_per_side": 8, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "max_side": 64,
            "relevance_threshold": 0.0, "iou_threshold": 0.0}
"""The random SAM's scores mean nothing: keep all its masks and merge any that touches a relevant pixel."""


@pytest.fixture(scope="module")
def photo() -> bytes:
    """A 160x120 world photo (a chair among distractors), PNG bytes."""
    with torch.random.fork_rng():
        rendered = render_photo(make_shape(3, "chair"), size=160, generator=torch.Generator().manual_seed(0))
    return encode_png(np.round(rendered.image.numpy()[20:140] * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory) -> str:
    return str(write_tiny_sam(tmp_path_factory.mktemp("sam") / "tiny_sam.pt"))


def run_job(client, submit: Submit, timeout: float = 120.0) -> list:
    client.send(submit)
    return list(client.job_messages(submit.job, timeout=timeout))


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_tiny_sam_segments_and_returns_mask_and_cutout_at_the_photo_size(client, photo, tiny_sam):
    msgs = run_job(client, Submit(job="seg", kind="segment", blobs={"image": photo},
                                  params={"prompt": "a chair", "sam_checkpoint": tiny_sam, **TINY, **TINY_SAM}))
    result = msgs[-1]
    assert isinstance(result, Result), result
    progress = [m for m in msgs if isinstance(m, Progress) and m.stage == "segment"]
    assert progress and progress[-1].step == progress[-1].total
    fields = result.fields
    assert fields["method"] == "sam tiny + dense-clip" and fields["proposer"] == "sam tiny"
    assert fields["fallback"] is False and fields["note"] == "" and fields["proposals"] >= 1
    assert fields["iou_merge"] and fields["rule"] == "iou-merge" and fields["clip"] == "tiny"
    assert (fields["width"], fields["height"]) == (160, 120) and fields["work_size"] == [48, 64]
    mask, cutout = decode(result.blobs["mask"]), decode(result.blobs["cutout"])
    assert mask.mode == "L" and mask.size == (160, 120) and np.asarray(mask).any()
    assert cutout.mode == "RGBA" and cutout.size == (160, 120)
    assert np.array_equal(np.asarray(cutout)[..., 3] > 0, np.asarray(mask) > 0)
    assert fields["area"] == pytest.approx((np.asarray(mask) > 0).mean(), abs=1e-4)


def test_point_and_box_prompts(client, photo, tiny_sam):
    params = {"prompt": "a chair", "sam_checkpoint": tiny_sam, **TINY, **TINY_SAM,
              "points": [[80, 60, 1], [3, 3, 0]], "box": [20, 10, 150, 110]}
    result = run_job(client, Submit(job="seg-prompts", kind="segment", blobs={"image": photo}, params=params))[-1]
    assert isinstance(result, Result), result
    assert result.fields["rule"] == "prompt" and decode(result.blobs["mask"]).size == (160, 120)


def test_superpixels_when_asked(client, photo):
    result = run_job(client, Submit(job="seg-sp", kind="segment", blobs={"image": photo},
                                    params={"prompt": "a chair", "proposer": "superpixels", **TINY}))[-1]
    assert isinstance(result, Result), result
    assert result.fields["method"] == "superpixels + dense-clip" and result.fields["fallback"] is False


def test_a_server_without_sam_weights_falls_back_and_says_so(tmp_path, monkeypatch, photo):
    monkeypatch.setenv("ATELIER_HOME", str(tmp_path / "empty-home"))
    server = start_server(tmp_path / "bare")
    try:
        with Client(server.endpoint) as c:
            result = run_job(c, Submit(job="seg-fallback", kind="segment", blobs={"image": photo},
                                       params={"prompt": "a chair", **TINY}))[-1]
            assert isinstance(result, Result), result
            assert result.fields["method"] == "superpixels (no SAM weights) + dense-clip"
            assert result.fields["fallback"] is True and "atelier models pull sam_vit_b" in result.fields["note"]
            assert decode(result.blobs["mask"]).size == (160, 120)
            error = run_job(c, Submit(job="seg-vit-l", kind="segment", blobs={"image": photo},
                                      params={"prompt": "a chair", "sam_type": "vit_l", **TINY}))[-1]
            assert isinstance(error, Error) and error.code == "weights_missing", error
            assert "sam_vit_l_0b3195.pth" in error.message and "atelier models pull sam_vit_l" in error.hint
    finally:
        assert stop_server(server) == 0, server.stderr()


def one_pixel() -> bytes:
    return encode_png(np.zeros((1, 1, 3), np.uint8))


@pytest.mark.parametrize("params, blobs, words", [
    ({"prompt": "x"}, {}, "the segment job needs a photo"),
    ({"prompt": "x"}, {"photo": b"..."}, "the segment job takes no blob 'photo'"),
    ({"prompt": "x"}, {"image": b"definitely not an image"}, "the photo is not an image that can be read"),
    ({"prompt": "x"}, {"image": b""}, "the photo is empty (0 bytes)"),
    ({"prompt": "x"}, {"image": "one_pixel"}, "the photo is 1x1 pixels; it needs at least 8x8"),
    ({}, {"image": "photo"}, "the prompt must be a string"),
    ({"prompt": "   "}, {"image": "photo"}, "the prompt is empty"),
    ({"prompt": "x" * 501}, {"image": "photo"}, "characters long, more than 500"),
    ({"prompt": "x", "sam_checkpoint": "/nowhere/sam.pth"}, {"image": "photo"}, "does not exist"),
    ({"prompt": "x", "sam_type": "vit_x"}, {"image": "photo"}, "'sam_type' must be one of vit_b, vit_l, vit_h"),
    ({"prompt": "x", "proposer": "magic"}, {"image": "photo"}, "'proposer' must be one of"),
    ({"prompt": "x", "points": [[500, 5, 1]]}, {"image": "photo"}, "outside the 160x120 photo"),
    ({"prompt": "x", "points": "here"}, {"image": "photo"}, "'points' must be a list"),
    ({"prompt": "x", "box": [50, 50, 10, 10]}, {"image": "photo"}, "empty or inverted"),
    ({"prompt": "x", "iou_threshold": 2}, {"image": "photo"}, "'iou_threshold' must be a number in [0.0, 1.0]"),
    ({"prompt": "x", "steps": 3}, {"image": "photo"}, "the segment job has no param 'steps'"),
])
def test_segment_rejects_bad_input_and_keeps_serving(client, photo, params, blobs, words):
    named = {"photo": photo, "one_pixel": one_pixel()}
    blobs = {k: named.get(v, v) if isinstance(v, str) else v for k, v in blobs.items()}
    error = run_job(client, Submit(job="bad", kind="segment", params={**TINY, **params}, blobs=blobs))[-1]
    assert isinstance(error, Error) and error.code == "invalid_input", error
    assert words in error.message and error.hint
    assert status(client).running is None
