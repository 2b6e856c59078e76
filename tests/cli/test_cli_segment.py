"""`atelier segment` end to end (tiny CLIP, tiny random SAM: plumbing): the mask PNG at the photo's original size,
the RGBA cut-out, the report (method, iou_merge, proposals), the labelled superpixel fallback without SAM weights,
photos of any mode, and bad input as one readable line with exit 2 and nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import backend.segment.segment as segment_module
from backend.cli import main
from backend.world.shape import make_shape
from backend.world.views import render_photo
from tests.segment.segment_helpers import disc_photo, write_tiny_sam

pytestmark = pytest.mark.timeout(180)
TINY = ["--clip", "tiny", "--relevance", "dense-clip", "--device", "cpu"]
# The random SAM's own scores mean nothing: keep every mask it proposes, and (plumbing) merge every mask that
# overlaps any relevant pixel at all.
TINY_SAM_ARGS = ["--points-per-side", "8", "--pred-iou-thresh", "0", "--stability-thresh", "0",
                 "--relevance-threshold", "0", "--iou-threshold", "0", "--max-side", "64"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def empty_home(tmp_path, monkeypatch):
    """No SAM weights in the cache unless a test names a checkpoint."""
    home = tmp_path / "atelier-home"
    home.mkdir()
    monkeypatch.setenv("ATELIER_HOME", str(home))


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory):
    return write_tiny_sam(tmp_path_factory.mktemp("sam") / "tiny_sam.pt")


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 160x120 world photo (a chair among distractors) as a PNG."""
    with torch.random.fork_rng():
        rendered = render_photo(make_shape(3, "chair"), size=160, generator=torch.Generator().manual_seed(0))
    pixels = np.round(rendered.image.numpy()[20:140] * 255).astype(np.uint8)  # 120 rows x 160 columns
    path = tmp_path_factory.mktemp("photo") / "chair.png"
    Image.fromarray(pixels).save(path)
    return path


def test_fallback_without_sam_weights_writes_mask_cutout_and_says_so(tmp_path, photo, capsys):
    out, cutout, report = tmp_path / "mask.png", tmp_path / "cut.png", tmp_path / "r.json"
    code = main(["segment", str(photo), "--prompt", "a chair", "--out", str(out), "--cutout", str(cutout), *TINY,
                 "--report", str(report)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(report.read_text())
    for key in ("command", "seconds", "device", "renderer", "method", "iou_merge", "proposals"):
        assert key in data, key
    assert data["method"] == "superpixels (no SAM weights) + dense-clip" and data["fallback"] is True
    assert "no SAM weights" in data["note"] and "no SAM weights" in captured.err
    assert "atelier models pull sam_vit_b" in captured.err
    assert data["proposals"] > 50 and data["iou_merge"] and all(v > 0.5 for v in data["iou_merge"])
    assert data["clip"] == "tiny" and data["sam_checkpoint"] is None
    mask = Image.open(out)
    assert mask.size == (160, 120) and mask.mode == "L"
    values = np.asarray(mask)
    assert set(np.unique(values)) <= {0, 255} and values.any()
    cut = Image.open(cutout)
    assert cut.size == (160, 120) and cut.mode == "RGBA"
    assert np.array_equal(np.asarray(cut)[..., 3] > 0, values > 0)
    assert f"wrote {out} and {cutout}" in captured.out


def test_tiny_sam_checkpoint_point_and_box_prompts(tmp_path, photo, tiny_sam, capsys):
    out, report = tmp_path / "mask.png", tmp_path / "r.json"
    base = ["segment", str(photo), "--prompt", "a chair", "--out", str(out), "--sam-checkpoint", str(tiny_sam),
            *TINY, *TINY_SAM_ARGS, "--report", str(report)]
    assert main(base) == 0, capsys.readouterr().err
    data = json.loads(report.read_text())
    assert data["method"] == "sam tiny + dense-clip" and data["fallback"] is False and data["proposals"] >= 1
    assert data["sam_checkpoint"] == str(tiny_sam.resolve()) and data["rule"] == "iou-merge"
    assert Image.open(out).size == (160, 120)
    assert main([*base, "--point", "80", "60", "1", "--point", "5", "5", "0", "--box", "20", "10", "150", "110"]) == 0
    data = json.loads(report.read_text())
    assert data["rule"] == "prompt" and Image.open(out).size == (160, 120)


@pytest.mark.parametrize("kind", ["rgba", "gray16", "exif"])
def test_any_mode_and_exif_rotation(tmp_path, kind, capsys):
    image, _ = disc_photo(60, 100)
    pixels = np.round(image * 255).astype(np.uint8)
    path = tmp_path / f"{kind}.png"
    expected = (100, 60)
    if kind == "rgba":
        Image.fromarray(np.dstack([pixels, np.full((60, 100), 200, np.uint8)])).save(path)
    elif kind == "gray16":
        Image.fromarray((pixels.mean(2) * 257).astype(np.uint16)).save(path)
    else:  # EXIF orientation 6: stored 100 wide, shown rotated 90°: 60 wide, 100 tall
        path = tmp_path / "exif.jpg"
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(pixels).save(path, exif=exif.tobytes(), quality=95)
        expected = (60, 100)
    out = tmp_path / "mask.png"
    assert main(["segment", str(path), "--prompt", "the red disc", "--out", str(out), *TINY]) == 0, \
        capsys.readouterr().err
    assert Image.open(out).size == expected


def _fails(capsys, argv, words, written=()) -> None:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().split("\r")[-1]  # a progress bar, if shown, clears itself with \r
    assert err.startswith("atelier segment: error:") and "\n" not in err and "Traceback" not in err, err
    assert words in err, err
    for path in written:
        assert not path.exists(), path


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, photo, capsys):
    out = tmp_path / "mask.png"
    junk, empty = tmp_path / "junk.png", tmp_path / "empty.png"
    junk.write_bytes(b"not an image at all")
    empty.write_bytes(b"")
    huge = tmp_path / "huge.png"
    Image.new("L", (9000, 8)).save(huge)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (4, 4)).save(tiny)
    args = ["--out", str(out), *TINY]
    cases = [
        (["segment", str(junk), "--prompt", "x", *args], "is not an image that can be read"),
        (["segment", str(empty), "--prompt", "x", *args], "is empty (0 bytes)"),
        (["segment", str(tmp_path / "gone.png"), "--prompt", "x", *args], "does not exist"),
        (["segment", str(huge), "--prompt", "x", *args], "larger than 8192"),
        (["segment", str(tiny), "--prompt", "x", *args], "needs at least 8x8"),
        (["segment", str(photo), "--prompt", "  ", *args], "the prompt is empty"),
        (["segment", str(photo), "--prompt", "x", "--sam-checkpoint", str(tmp_path / "none.pth"), *args],
         "does not exist"),
        (["segment", str(photo), "--prompt", "x", "--sam-type", "vit_h", *args], "atelier models pull sam_vit_h"),
        (["segment", str(photo), "--prompt", "x", "--proposer", "sam", *args], "atelier models pull sam_vit_b"),
        (["segment", str(photo), "--prompt", "x", "--point", "999", "5", "1", *args], "outside the 160x120 photo"),
        (["segment", str(photo), "--prompt", "x", "--relevance-threshold", "2", *args], "relevance_threshold"),
    ]
    for argv, words in cases:
        _fails(capsys, argv, words, written=[out])


def test_no_mask_found_is_an_error_and_no_file(tmp_path, photo, capsys, monkeypatch):
    # Stub relevance (plumbing): the prompt matches nowhere.
    monkeypatch.setattr(segment_module, "compute_relevance",
                        lambda image, prompt, clip, config, device: (np.zeros(image.shape[:2], np.float32), "stub"))
    out = tmp_path / "mask.png"
    _fails(capsys, ["segment", str(photo), "--prompt", "a unicorn", "--out", str(out), *TINY],
           "no mask found for 'a unicorn'", written=[out])
