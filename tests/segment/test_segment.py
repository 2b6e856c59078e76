"""`segment` end to end: the tiny random SAM (saved, loaded by the real loader) proposes masks, the merge picks
those inside the relevance region, and the mask comes back at the photo's original size with an RGBA cut-out.

Random weights prove the plumbing only. Where a test must know which masks the relevance selects, the relevance
map is replaced by a known one (`stub_relevance`, said so at each use); the other tests run the real relevance
map (dense CLIP of the tiny CLIP).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import backend.segment.segment as segment_module
from backend.errors import InvalidInputError, JobCancelled, WeightsMissingError
from backend.models.clip import load_clip
from backend.models.store import weights_dir
from backend.progress import CancelToken
from backend.segment.merge import MergeConfig, constrained_iou
from backend.segment.relevance import RelevanceConfig
from backend.segment.sam import load_sam, propose_sam
from backend.segment.segment import SegmentConfig, segment, upscale_mask
from backend.segment.superpixels import METHOD_FALLBACK
from backend.world.shape import make_shape
from backend.world.views import render_photo
from tests.segment.segment_helpers import disc_photo, tiny_sam_config

DENSE = RelevanceConfig(method="dense-clip")


@pytest.fixture(scope="module")
def tiny_clip():
    return load_clip("tiny")


@pytest.fixture(scope="module")
def world_photo():
    """A 150x150 world photo (a chair among distractors) and the chair's true mask."""
    with torch.random.fork_rng():
        photo = render_photo(make_shape(3, "chair"), size=150, generator=torch.Generator().manual_seed(0))
    return photo.image.numpy(), photo.mask.numpy()


def stub_relevance(monkeypatch, relevance: np.ndarray) -> None:
    """Replaces the relevance map with `relevance` (resized to the working image): plumbing tests only."""

    def known(image, prompt, clip, config, device):
        return segment_module.resize_map(relevance.astype(np.float32), image.shape[:2]), "stub"

    monkeypatch.setattr(segment_module, "compute_relevance", known)


def sam_config(path, **merge) -> SegmentConfig:
    return SegmentConfig(proposer="sam", sam=tiny_sam_config(path), relevance=DENSE, max_side=64,
                         merge=MergeConfig(**merge))


def test_tiny_sam_whole_path_returns_the_selected_proposal_at_the_original_size(monkeypatch, tiny_sam_path,
                                                                               world_photo):
    image, _ = world_photo
    image = np.ascontiguousarray(image[:, 10:130])  # 150 x 120: not square, not the working size
    config = sam_config(tiny_sam_path)
    # Which masks the tiny SAM proposes at the working size (64 px on the longer side):
    work = segment_module.resize_image(image, segment_module.working_size(150, 120, 64))
    proposals, _ = propose_sam(load_sam(tiny_sam_path), np.round(work * 255).astype(np.uint8), config.sam)
    assert len(proposals.masks) >= 1
    target = proposals.masks[0]
    # Stub relevance (plumbing): exactly that proposal is relevant, so the merge must select it.
    stub_relevance(monkeypatch, upscale_mask(target, (150, 120)).astype(np.float32))
    steps = []
    result = segment(image, "a chair", None, config, progress=lambda s, t, **m: steps.append((s, t)))
    assert result.mask.shape == (150, 120) and result.mask.dtype == bool
    assert result.cutout.shape == (150, 120, 4) and result.cutout.dtype == np.uint8
    assert result.method == "sam tiny + stub" and result.proposer == "sam tiny" and not result.fallback
    assert result.proposals == len(proposals.masks) and result.rule == "iou-merge"
    assert result.iou_merge and result.iou_merge[0] == pytest.approx(1.0, abs=0.02)
    assert result.work_size == (64, 51) and result.relevance.shape == (64, 51)
    assert result.sam_checkpoint == str(tiny_sam_path.resolve())
    inside = constrained_iou(proposals.masks, target) > 0.5  # the target and any mask mostly inside it
    expected = upscale_mask(np.any(proposals.masks[inside], axis=0), (150, 120))
    assert np.array_equal(result.mask, expected)
    # The cut-out is the photo with alpha = mask.
    assert np.array_equal(result.cutout[..., 3] > 0, result.mask)
    assert np.array_equal(result.cutout[..., :3], np.round(image * 255).astype(np.uint8))
    assert steps[0] == (1, steps[-1][1]) and steps[-1][0] == steps[-1][1]


def test_tiny_sam_with_the_real_relevance_map(tiny_sam_path, tiny_clip, world_photo):
    image, _ = world_photo
    # Thresholds 0: every random mask that touches any relevant pixel is merged (plumbing, not quality).
    result = segment(image, "a chair", tiny_clip, sam_config(tiny_sam_path, relevance_threshold=0.0,
                                                             iou_threshold=0.0))
    assert result.method == "sam tiny + dense-clip" and result.mask.shape == (150, 150) and result.mask.any()
    assert result.rule == "iou-merge" and len(result.iou_merge) == result.proposals


def test_no_sam_weights_falls_back_to_superpixels_and_says_so(empty_home, tiny_clip, world_photo):
    image, truth = world_photo
    result = segment(image, "a chair", tiny_clip, SegmentConfig(relevance=DENSE))
    assert result.fallback and result.proposer == METHOD_FALLBACK
    assert result.method == f"{METHOD_FALLBACK} + dense-clip"
    assert "no SAM weights" in result.note and "atelier models pull sam_vit_b" in result.note
    assert result.mask.shape == truth.shape and result.mask.any() and result.sam_checkpoint is None
    assert result.proposals > 50


def test_superpixels_snap_a_known_relevance_region_to_the_object(monkeypatch, empty_home):
    image, disc = disc_photo(180, 240)
    yy, xx = np.mgrid[0:180, 0:240]
    # A smooth relevance blob, off the disc's centre by 8 px, whose half-maximum circle has the disc's radius.
    blob = np.exp(-((yy - 98.0) ** 2 + (xx - 136.0) ** 2) / 60.0 ** 2).astype(np.float32)
    stub_relevance(monkeypatch, blob)  # stub relevance (plumbing): where the map peaks is known
    result = segment(image, "the red disc", None, SegmentConfig())
    region = blob >= 0.5
    iou = (result.mask & disc).sum() / (result.mask | disc).sum()
    assert iou > 0.85 and iou > (region & disc).sum() / (region | disc).sum(), iou  # closer than R itself


def test_sam_cached_under_its_catalogue_name_is_used_without_being_named(empty_home, tiny_sam_path, tiny_clip,
                                                                        world_photo):
    cached = weights_dir() / "sam_vit_b_01ec64.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(tiny_sam_path.read_bytes())
    config = SegmentConfig(sam=tiny_sam_config(tiny_sam_path, checkpoint=None), relevance=DENSE, max_side=64,
                           merge=MergeConfig(relevance_threshold=0.0))
    result = segment(world_photo[0], "a chair", tiny_clip, config)
    assert result.proposer == "sam tiny" and result.sam_checkpoint == str(cached.resolve())


def test_missing_checkpoint_path_and_missing_type_are_errors_never_a_fallback(tmp_path, empty_home, tiny_clip):
    image, _ = disc_photo()
    with pytest.raises(InvalidInputError, match="SAM checkpoint .* does not exist"):
        segment(image, "a disc", tiny_clip, SegmentConfig(sam=tiny_sam_config(tmp_path / "gone.pth")))
    with pytest.raises(WeightsMissingError, match="sam_vit_h_4b8939.pth.*2.56 GB.*atelier models pull sam_vit_h"):
        segment(image, "a disc", tiny_clip, SegmentConfig(sam=tiny_sam_config(None, checkpoint=None, sam_type="vit_h")))
    with pytest.raises(WeightsMissingError, match="atelier models pull sam_vit_b"):
        segment(image, "a disc", tiny_clip, SegmentConfig(proposer="sam"))


def test_point_and_box_prompts_refine_through_the_sam_predictor(monkeypatch, tiny_sam_path, world_photo):
    image, _ = world_photo
    stub_relevance(monkeypatch, np.ones((150, 150), np.float32))  # plumbing: every proposal is relevant
    config = sam_config(tiny_sam_path)
    text_only = segment(image, "a chair", None, config)
    clicked = segment(image, "a chair", None, config, points=[[75, 75, 1], [10, 140, 0]])
    boxed = segment(image, "a chair", None, config, box=[30, 30, 120, 120])
    negative = segment(image, "a chair", None, config, points=[[10, 10, 0]])
    for result in (clicked, boxed, negative):
        assert result.rule == "prompt" and result.mask.shape == (150, 150) and result.mask.any()
        assert result.iou_merge == text_only.iou_merge  # the text stage ran too
    # Without any text mask, negative points alone have nothing to refine.
    stub_relevance(monkeypatch, np.zeros((150, 150), np.float32))
    with pytest.raises(InvalidInputError, match="all negative"):
        segment(image, "a chair", None, config, points=[[10, 10, 0]])
    # ...while a positive point still finds the object from SAM alone.
    assert segment(image, "a chair", None, config, points=[[75, 75, 1]]).mask.any()


def test_superpixel_prompts_add_and_remove_colour_groups(monkeypatch, empty_home):
    image, disc = disc_photo(180, 240)
    stub_relevance(monkeypatch, np.zeros(disc.shape, np.float32))  # plumbing: the text finds nothing
    added = segment(image, "the red disc", None, SegmentConfig(), points=[[144, 90, 1]])
    assert (added.mask & disc).sum() / (added.mask | disc).sum() > 0.85
    boxed = segment(image, "the red disc", None, SegmentConfig(), box=[90, 35, 200, 145])
    assert boxed.mask.any() and not boxed.mask[:, :85].any()
    top = np.zeros(disc.shape, bool)
    top[:60] = True
    stub_relevance(monkeypatch, (disc | top).astype(np.float32))
    carved = segment(image, "the red disc", None, SegmentConfig(), points=[[144, 90, 0]])
    assert (carved.mask & disc).sum() < 0.1 * disc.sum() and (carved.mask & top).sum() > 0.9 * (top & ~disc).sum()
    with pytest.raises(InvalidInputError, match="the prompts leave no region"):
        segment(image, "the red disc", None, SegmentConfig(), points=[[144, 90, 0], [20, 20, 0]])


def test_rgba_photos_keep_their_alpha_in_the_cutout(monkeypatch, empty_home):
    image, disc = disc_photo()
    rgba = np.concatenate([image, np.ones((*disc.shape, 1), np.float32)], axis=2)
    rgba[:, :10, 3] = 0.0  # a transparent strip on the left
    stub_relevance(monkeypatch, np.ones(disc.shape, np.float32))  # plumbing: everything is relevant
    result = segment(rgba, "everything", None, SegmentConfig())
    assert result.mask[:, :10].any() and not result.cutout[:, :10, 3].any()


def test_no_mask_found_is_a_clear_error_not_an_empty_mask(monkeypatch, empty_home):
    image, disc = disc_photo()
    stub_relevance(monkeypatch, np.zeros(disc.shape, np.float32))  # plumbing: the prompt is nowhere
    with pytest.raises(InvalidInputError, match="no mask found for 'a unicorn'") as info:
        segment(image, "a unicorn", None, SegmentConfig())
    assert "another prompt" in info.value.hint and "point" in info.value.hint
    line = np.zeros(disc.shape, np.float32)
    line[:, 3] = 1.0  # relevant only along a 1-px line: no proposal lies mostly inside it
    stub_relevance(monkeypatch, line)
    with pytest.raises(InvalidInputError, match="none of the .* proposed regions lies mostly where the prompt is"):
        segment(image, "a unicorn", None, SegmentConfig(merge=MergeConfig(fallback_iou=2.0)))


def test_bad_input_is_refused_before_any_model_runs(tiny_clip):
    image, _ = disc_photo()
    cases = [
        (dict(image=np.zeros((0, 0, 3), np.float32)), "0x0 pixels"),
        (dict(image=np.zeros((8193, 16, 3), np.float32)), "larger than 8192"),
        (dict(image=np.zeros((20, 20), np.float32)), r"\[H, W, 3\]"),
        (dict(image=(image * 255).astype(np.uint8)), "float in"),
        (dict(image=np.full((20, 20, 3), np.nan, np.float32)), "NaN"),
        (dict(prompt=""), "the prompt is empty"),
        (dict(prompt="   "), "the prompt is empty"),
        (dict(prompt="x" * 501), "characters long, more than 500"),
        (dict(points=[[500, 5, 1]]), "outside the 120x90 photo"),
        (dict(points=[[5, 5, 2]]), "label 2"),
        (dict(points=[[5, 5]]), "not \\[x, y, label\\]"),
        (dict(box=[50, 50, 10, 80]), "empty or inverted"),
        (dict(box=[0, 0, 500, 80]), "reaches outside"),
        (dict(config=SegmentConfig(proposer="magic")), "proposer"),
        (dict(config=SegmentConfig(max_side=4)), "max_side"),
    ]
    for overrides, words in cases:
        args = dict(image=image, prompt="a disc", config=SegmentConfig(relevance=DENSE))
        args.update(overrides)
        with pytest.raises(InvalidInputError, match=words):
            segment(args["image"], args["prompt"], tiny_clip, args["config"], points=args.get("points"),
                    box=args.get("box"))


def test_cancel_stops_the_run(tiny_sam_path, tiny_clip):
    image, _ = disc_photo()
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        segment(image, "a disc", tiny_clip, sam_config(tiny_sam_path), cancel=token)
