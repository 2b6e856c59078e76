"""Text-guided segmentation (seed 004): the object a prompt names in a photo, as a mask and an RGBA cut-out.

1. The photo is resized so its longer side is at most `max_side` (the models' working size; SAM itself works
   at 1024 px). Transparent pixels are composited over white for the models.
2. Relevance: where the prompt is in the image, a map in [0, 1] (`backend.segment.relevance`: CLIPSeg when
   installed, else dense CLIP patch similarity).
3. Proposals: Segment Anything's automatic masks (`sam.py`). Without SAM weights (none given, none in the cache)
   SLIC superpixel groups stand in (`superpixels.py`) and the method says "superpixels (no SAM weights)".
4. Merge: the masks whose IoU with the relevance region, constrained by the mask, exceeds 0.5 are united
   (`merge.py`, which also documents the threshold of the relevance map and the best-single rule).
5. Prompts (optional): points (x, y, label; label 1 on the object, 0 not on it) and a box (x0, y0, x1, y1), in
   pixels of the original photo, refine the result. With SAM they go to its predictor, which returns three
   candidate masks (whole, part, sub-part); the one that agrees best with the text's mask (IoU) is kept, or SAM's
   best-scored one when the text found nothing. Negative points alone refine the text's mask: its box is the box
   prompt. With superpixels, a positive point adds the colour group under it, a negative one removes it, and a
   box clips the mask to it (or, when the text found nothing inside, selects the groups mostly inside it).
6. The mask is scaled back to the photo's original size (bilinear on the mask, cut at 0.5), and the cut-out is
   the photo's RGB with alpha = mask x the photo's own alpha.

Nothing found is an InvalidInputError ("no mask found for PROMPT"), never an empty mask.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import torch
from PIL import Image

from backend.errors import InvalidInputError
from backend.geometry.png import encode_png
from backend.images import MAX_IMAGE_SIDE, MIN_IMAGE_SIDE
from backend.models.catalogue import lookup
from backend.models.store import missing_weights_error
from backend.progress import CancelToken, ProgressFn, no_progress
from backend.segment.merge import MergeConfig, MergeResult, merge_masks
from backend.segment.relevance import RelevanceConfig, relevance_map, resolve_method
from backend.segment.sam import (
    LoadedSam, SamConfig, find_sam_checkpoint, load_sam, no_weights_note, predict_prompts, propose_sam,
)
from backend.segment.superpixels import SuperpixelConfig, propose_superpixels
from backend.stylize.losses import check_prompt as check_text_prompt

Proposer = Literal["auto", "sam", "superpixels"]
PROPOSERS = ("auto", "sam", "superpixels")
MAX_POINTS = 64
"""Point prompts one request may carry."""
DEFAULT_CLIP = "ViT-B-16:openai"
"""The CLIP whose dense features give the relevance map when CLIPSeg is not here (`--clip` overrides): MaskCLIP
found ViT-B/16 the better of OpenAI's CLIPs for dense features. Tests use `tiny` / `domain`."""


@dataclass
class SegmentConfig:
    """Text-guided segmentation, end to end."""

    proposer: Proposer = "auto"
    """'auto': SAM when weights are given or cached, else the superpixel fallback (labelled so); 'sam': SAM or a
    WeightsMissingError; 'superpixels': the superpixel proposer even when SAM weights are present."""
    sam: SamConfig = field(default_factory=SamConfig)
    """Which SAM checkpoint and how its automatic generator proposes masks."""
    superpixels: SuperpixelConfig = field(default_factory=SuperpixelConfig)
    """The fallback proposer."""
    relevance: RelevanceConfig = field(default_factory=RelevanceConfig)
    """The text relevance map: CLIPSeg when installed and cached, else dense CLIP (`relevance.py`)."""
    merge: MergeConfig = field(default_factory=MergeConfig)
    """The relevance threshold and the constrained-IoU merge."""
    max_side: int = 1024
    """The working size: the photo is resized so its longer side is at most this for the models (SAM resizes to
    1024 itself; larger only costs memory). The superpixel proposer caps it further (`superpixels.max_side`)."""

    def check(self) -> None:
        """Raises InvalidInputError for a setting out of range (before anything loads)."""
        if self.proposer not in PROPOSERS:
            raise InvalidInputError(f"proposer must be one of {', '.join(PROPOSERS)}, got {self.proposer!r}")
        if not 32 <= self.max_side <= MAX_IMAGE_SIDE:
            raise InvalidInputError(f"max_side must be in [32, {MAX_IMAGE_SIDE}], got {self.max_side}")
        self.sam.check()
        self.superpixels.check()
        self.merge.check()

    def relevance_method(self) -> str:
        """'clipseg' or 'dense-clip': the relevance method that will run here (an explicit 'clipseg' without
        transformers or its weights raises the error that names the fix). Callers load a CLIP only for
        'dense-clip'."""
        return resolve_method(self.relevance)


@dataclass
class SegmentResult:
    """The segmented object and how it was found."""

    mask: np.ndarray
    """[H, W] bool at the photo's original size: True on the object."""
    cutout: np.ndarray
    """[H, W, 4] uint8 RGBA: the photo with alpha = mask x its own alpha (straight alpha)."""
    method: str
    """'<proposer> + <relevance>', e.g. 'sam vit_b + clipseg', 'superpixels (no SAM weights) + dense-clip'."""
    proposer: str
    """'sam vit_b', 'sam tiny', 'superpixels (no SAM weights)' or 'superpixels'."""
    relevance_method: str
    """'clipseg' or 'dense-clip'."""
    fallback: bool
    """Whether superpixels stood in for missing SAM weights (see `note`)."""
    proposals: int
    """Candidate masks proposed."""
    iou_merge: list[float]
    """Constrained IoU |S ∩ R| / |S| of each merged proposal, highest first."""
    rule: str
    """'iou-merge' (above 0.5), 'best-single' (none passed; the best kept), or 'prompt' (points/box decided)."""
    relevance: np.ndarray
    """[h, w] float32 in [0, 1]: the relevance map at the working size `work_size`."""
    work_size: tuple[int, int]
    """(h, w) the models worked at."""
    seconds: dict[str, float]
    """Wall time per stage: relevance, propose, merge, prompts, total."""
    note: str = ""
    """A sentence for the user: why the fallback ran, or '' ."""
    sam_checkpoint: str | None = None
    """The SAM file that proposed the masks (None for superpixels)."""

    @property
    def area(self) -> float:
        """The mask's share of the photo."""
        return float(self.mask.mean())


# ---------------------------------------------------------------------------------------------- checks


def check_prompt(prompt: Any) -> str:
    """The stripped prompt; InvalidInputError when it is not a non-empty string of at most 500 characters."""
    return check_text_prompt(prompt, hint="say what to cut out, e.g. --prompt 'the red chair'")


def check_image(image: Any) -> np.ndarray:
    """[H, W, 3|4] float in [0, 1] -> the same as float32 (clipped); InvalidInputError for anything else."""
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(f"the image must be a numpy array, got {type(image).__name__}",
                                hint="load it with backend.images.load_image")
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InvalidInputError(f"the image must be [H, W, 3] or [H, W, 4], got shape {image.shape}",
                                hint="load it with backend.images.load_image")
    height, width = image.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE:
        raise InvalidInputError(f"the image is {width}x{height} pixels; it needs at least {MIN_IMAGE_SIDE} on a side",
                                hint="use a larger photo")
    if max(height, width) > MAX_IMAGE_SIDE:
        raise InvalidInputError(f"the image is {width}x{height} pixels, larger than {MAX_IMAGE_SIDE} on a side",
                                hint=f"downscale it to at most {MAX_IMAGE_SIDE} pixels on its longer side")
    if not np.issubdtype(image.dtype, np.floating):
        raise InvalidInputError(f"the image must be float in [0, 1], got {image.dtype}",
                                hint="divide uint8 images by 255")
    image = np.asarray(image, np.float32)
    low, high = float(image.min()), float(image.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InvalidInputError("the image has NaN or infinite values", hint="load it with backend.images.load_image")
    return image if 0.0 <= low and high <= 1.0 else np.clip(image, 0.0, 1.0)


def check_points(points: Any, height: int, width: int) -> np.ndarray | None:
    """[[x, y, label], ...] in pixels of the (H, W) image, label 1 (on the object) or 0 (not) -> [P, 3] float32."""
    if points is None:
        return None
    hint = "send points as [[x, y, label], ...]: pixel coordinates of the photo, label 1 on the object, 0 not on it"
    if not isinstance(points, (list, tuple, np.ndarray)) or len(points) > MAX_POINTS:
        raise InvalidInputError(f"points must be a list of at most {MAX_POINTS} [x, y, label] triples", hint=hint)
    out = []
    for i, point in enumerate(points):
        if (not isinstance(point, (list, tuple, np.ndarray)) or len(point) != 3
                or not all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in point)):
            raise InvalidInputError(f"point {i} is {point!r:.60}, not [x, y, label]", hint=hint)
        x, y, label = (float(v) for v in point)
        if label not in (0.0, 1.0):
            raise InvalidInputError(f"point {i} has label {label:g}; labels are 1 (on the object) or 0 (not)",
                                    hint=hint)
        if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= width - 1 and 0 <= y <= height - 1):
            raise InvalidInputError(f"point {i} ({x:g}, {y:g}) is outside the {width}x{height} photo", hint=hint)
        out.append((x, y, label))
    return np.asarray(out, np.float32).reshape(-1, 3) if out else None


def check_box(box: Any, height: int, width: int) -> np.ndarray | None:
    """[x0, y0, x1, y1] in pixels of the (H, W) image, x0 < x1 and y0 < y1, inside it -> [4] float32."""
    if box is None:
        return None
    hint = "send the box as [x0, y0, x1, y1] in pixel coordinates of the photo (x0 < x1, y0 < y1)"
    if (not isinstance(box, (list, tuple, np.ndarray)) or len(box) != 4
            or not all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in box)):
        raise InvalidInputError(f"the box is {box!r:.80}, not [x0, y0, x1, y1]", hint=hint)
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or not (x0 < x1 and y0 < y1):
        raise InvalidInputError(f"the box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] is empty or inverted", hint=hint)
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise InvalidInputError(f"the box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] reaches outside the {width}x{height} photo",
                                hint=hint)
    return np.asarray([x0, y0, x1, y1], np.float32)


# ---------------------------------------------------------------------------------------------- helpers


def working_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(h, w) with the longer side at most `max_side`, aspect ratio kept, each side at least 1."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[H, W, C] float32 -> [h, w, C] float32, antialiased bilinear (the image itself when the size matches)."""
    if image.shape[:2] == tuple(size):
        return image
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x[0].permute(1, 2, 0).clamp(0.0, 1.0).numpy()


def resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[h, w] float -> [H, W] float32, bilinear (antialiased when shrinking)."""
    if values.shape == tuple(size):
        return np.asarray(values, np.float32)
    x = torch.from_numpy(np.ascontiguousarray(values, np.float32))[None, None]
    shrink = size[0] < values.shape[0] or size[1] < values.shape[1]
    out = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return out[0, 0].numpy()


def upscale_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[h, w] bool -> [H, W] bool: bilinear on the 0/255 mask, cut at half (smooth edges, no float copy of a
    large photo: Pillow works in 8 bits)."""
    if mask.shape == tuple(size):
        return mask.copy()
    image = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(image.resize((size[1], size[0]), Image.Resampling.BILINEAR)) >= 128


def _scale_points(points: np.ndarray | None, sy: float, sx: float) -> np.ndarray | None:
    """Pixel coordinates of the photo -> the working image's (pixel centres map to pixel centres)."""
    if points is None:
        return None
    out = points.copy()
    out[:, 0] = (points[:, 0] + 0.5) * sx - 0.5
    out[:, 1] = (points[:, 1] + 0.5) * sy - 0.5
    return out


def _mask_box(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return np.asarray([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def compute_relevance(image: np.ndarray, prompt: str, clip: Any, config: Any, device: str | torch.device
                      ) -> tuple[np.ndarray, str]:
    """(map [h, w] float32 in [0, 1], method) from `backend.segment.relevance.relevance_map`.

    image: [h, w, 3] float32 RGB in [0, 1]. A seam for tests of the plumbing, which replace it with a known map.
    """
    result = relevance_map(image, prompt, clip, config, device=device)
    return np.asarray(result.map, np.float32), str(result.method)


def no_mask_error(prompt: str, proposals: int, prompts: bool) -> InvalidInputError:
    if prompts:
        return InvalidInputError(f"no mask found for {prompt!r}: the prompts leave no region",
                                 hint="click a positive point (label 1) on the object, or draw a box around it")
    if proposals == 0:
        return InvalidInputError(f"no mask found for {prompt!r}: the proposer found no regions in the photo",
                                 hint="click a point on the object (a point prompt), or use a larger, sharper photo")
    return InvalidInputError(f"no mask found for {prompt!r}: none of the {proposals} proposed regions lies mostly "
                             "where the prompt is", hint="try another prompt (name the object plainly), "
                                                         "or click a point on the object (a point prompt)")


# ---------------------------------------------------------------------------------------------- proposers


@dataclass
class _Plan:
    """Which proposer runs, decided before anything heavy loads."""

    kind: Literal["sam", "superpixels"]
    fallback: bool = False
    path: Any = None
    sam_type: str | None = None


def plan_proposer(config: SegmentConfig) -> _Plan:
    """The proposer `config` asks for, resolved on this machine (fast: no model loads).

    A given checkpoint that does not exist, and a named `sam_type` that is not cached, are errors; only 'auto'
    with no weights at all falls back to superpixels.
    """
    if config.proposer == "superpixels":
        return _Plan("superpixels")
    found = find_sam_checkpoint(config.sam)
    if found is None:
        if config.proposer == "sam":
            raise missing_weights_error(lookup("sam_vit_b"))
        return _Plan("superpixels", fallback=True)
    return _Plan("sam", path=found[0], sam_type=found[1])


def _refine_with_sam(loaded: LoadedSam, work_u8: np.ndarray, text_mask: np.ndarray, points: np.ndarray | None,
                     box: np.ndarray | None, predictor: Any) -> np.ndarray:
    positive = points is not None and bool((points[:, 2] == 1).any())
    if box is None and not positive:
        if not text_mask.any():
            raise InvalidInputError("the point prompts are all negative (label 0) and the text found no mask to "
                                    "refine", hint="click a positive point (label 1) on the object, or draw a box")
        box = _mask_box(text_mask)  # negative points alone carve the text's mask
    masks, scores = predict_prompts(loaded, work_u8, points, box, predictor)
    if text_mask.any():
        agreement = [_iou(m, text_mask) for m in masks]
        best = max(range(len(masks)), key=lambda i: (agreement[i], scores[i]))
    else:
        best = int(np.argmax(scores))
    return masks[best]


def _refine_with_superpixels(labels: np.ndarray, text_mask: np.ndarray, points: np.ndarray | None,
                             box: np.ndarray | None) -> np.ndarray:
    mask = text_mask.copy()
    height, width = labels.shape
    if box is not None:
        x0, y0, x1, y1 = box
        inside = np.zeros_like(mask)
        inside[max(0, int(math.floor(y0))):int(math.ceil(y1)), max(0, int(math.floor(x0))):int(math.ceil(x1))] = True
        if (mask & inside).any():
            mask &= inside
        else:  # the text found nothing in the box: the colour groups mostly inside it
            ids = np.unique(labels)
            share = np.asarray([(inside & (labels == i)).sum() / max((labels == i).sum(), 1) for i in ids])
            mask = np.isin(labels, ids[share > 0.5]) & inside
    if points is not None:
        for x, y, label in points:
            group = labels == labels[min(height - 1, max(0, round(y))), min(width - 1, max(0, round(x)))]
            mask = (mask | group) if label == 1 else (mask & ~group)
    return mask


# ---------------------------------------------------------------------------------------------- segment


def segment(image: np.ndarray, prompt: str, clip: Any, config: SegmentConfig | None = None,
            points: Sequence[Sequence[float]] | None = None, box: Sequence[float] | None = None,
            progress: ProgressFn = no_progress, cancel: CancelToken | None = None,
            device: str | torch.device = "cpu") -> SegmentResult:
    """The object `prompt` names in `image` (module docstring).

    image: [H, W, 3|4] float in [0, 1] (`backend.images.load_image(..., keep_alpha=True)`), any size up to 8192;
    prompt: what to cut out; clip: the `ClipModel` the relevance map uses (dense CLIP; CLIPSeg ignores it);
    points: [[x, y, label], ...] and box: [x0, y0, x1, y1] in pixels of `image` (optional prompts);
    progress(step, total): relevance, one step per proposal batch, the finish; cancel: checked per step.
    Raises InvalidInputError for bad input and for "no mask found", WeightsMissingError when SAM is required
    (`proposer='sam'` or a named `sam_type`) and absent.
    """
    start = time.perf_counter()
    config = config or SegmentConfig()
    config.check()
    prompt = check_prompt(prompt)
    image = check_image(image)
    height, width = image.shape[:2]
    user_points = check_points(points, height, width)
    user_box = check_box(box, height, width)
    has_prompts = user_points is not None or user_box is not None
    config.relevance_method()
    plan = plan_proposer(config)  # missing weights and paths fail here, before any model loads
    device = torch.device(device)
    seconds: dict[str, float] = {}

    side = config.max_side if plan.kind == "sam" else min(config.max_side, config.superpixels.max_side)
    work_size = working_size(height, width, side)
    work = resize_image(image, work_size)  # resized first: a large photo is not copied at full size
    if work.shape[2] == 4:  # the models see transparent pixels over white
        work = work[..., :3] * work[..., 3:] + (1.0 - work[..., 3:])
    work = np.ascontiguousarray(work, np.float32)

    loaded = load_sam(plan.path, plan.sam_type, device) if plan.kind == "sam" else None
    batches = (math.ceil(config.sam.points_per_side ** 2 / config.sam.points_per_batch)
               * sum(4 ** layer for layer in range(config.sam.crop_n_layers + 1))
               if plan.kind == "sam" else len(config.superpixels.levels) + 1)
    total = batches + 2

    def check_cancel() -> None:
        if cancel is not None:
            cancel.check()

    check_cancel()
    tick = time.perf_counter()
    relevance, relevance_method = compute_relevance(work, prompt, clip, config.relevance, device)
    if relevance.shape != work_size:
        relevance = resize_map(relevance, work_size)
    relevance = np.clip(np.nan_to_num(relevance, nan=0.0), 0.0, 1.0).astype(np.float32)
    seconds["relevance"] = time.perf_counter() - tick
    progress(1, total)
    check_cancel()

    tick = time.perf_counter()
    predictor = None
    work_u8 = np.round(work * 255.0).astype(np.uint8)

    def propose_progress(step: int, _total: int, **metrics: float) -> None:
        progress(1 + min(step, batches), total, **metrics)

    if loaded is not None:
        proposals, predictor = propose_sam(loaded, work_u8, config.sam, propose_progress, cancel)
    else:
        proposals = propose_superpixels(work, config.superpixels, fallback=plan.fallback, progress=propose_progress,
                                        cancel=cancel)
    seconds["propose"] = time.perf_counter() - tick
    check_cancel()

    tick = time.perf_counter()
    proposal_size = tuple(proposals.masks.shape[1:])
    merge_rel = relevance if proposal_size == work_size else resize_map(relevance, proposal_size)
    merged: MergeResult = merge_masks(proposals.masks, merge_rel, config.merge)
    seconds["merge"] = time.perf_counter() - tick
    mask, rule = merged.mask, merged.rule
    if has_prompts:
        tick = time.perf_counter()
        sy, sx = work_size[0] / height, work_size[1] / width
        work_points = _scale_points(user_points, sy, sx)
        work_box = None if user_box is None else user_box * np.asarray([sx, sy, sx, sy], np.float32)
        if loaded is not None:
            mask = _refine_with_sam(loaded, work_u8, mask, work_points, work_box, predictor)
        else:
            mask = _refine_with_superpixels(proposals.labels, mask, work_points, work_box)
        rule = "prompt"
        seconds["prompts"] = time.perf_counter() - tick
    if not mask.any():
        raise no_mask_error(prompt, len(proposals.masks), has_prompts)

    full = upscale_mask(mask, (height, width))
    if not full.any():  # a speck at the working size can vanish when scaled: keep its nearest pixels
        full = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height),
                                                                              Image.Resampling.NEAREST)) > 0
    alpha = image[..., 3] if image.shape[2] == 4 else np.ones((height, width), np.float32)
    cutout = np.empty((height, width, 4), np.uint8)
    cutout[..., :3] = np.round(image[..., :3] * 255.0).astype(np.uint8)
    cutout[..., 3] = np.round(alpha * full * 255.0).astype(np.uint8)
    progress(total, total)
    seconds["total"] = time.perf_counter() - start
    note = no_weights_note() if plan.fallback else ""
    return SegmentResult(
        mask=full, cutout=cutout, method=f"{proposals.method} + {relevance_method}", proposer=proposals.method,
        relevance_method=relevance_method, fallback=plan.fallback, proposals=int(len(proposals.masks)),
        iou_merge=merged.iou_merge, rule=rule, relevance=relevance, work_size=work_size,
        seconds={k: round(v, 4) for k, v in seconds.items()}, note=note,
        sam_checkpoint=str(loaded.path) if loaded is not None else None)


def encode_mask_png(mask: np.ndarray) -> bytes:
    """[H, W] bool -> an 8-bit grayscale PNG (255 on the object, 0 elsewhere)."""
    return encode_png(np.asarray(mask, bool).astype(np.uint8) * 255)


def encode_rgba_png(rgba: np.ndarray) -> bytes:
    """[H, W, 4] uint8 -> an RGBA PNG."""
    return encode_png(rgba)
