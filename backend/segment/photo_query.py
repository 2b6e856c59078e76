"""A photo query's object, found and cut out before it is embedded: what `search --image` sends to the encoder.

A library's shaded views show one object filling the frame on white (`backend.retrieve.views`); a photo shows
it small, among clutter, lit otherwise. Embedded whole, a world photo finds its shape near chance (the domain
CLIP, 160 photos of 80 test shapes: R@1 0.025, chance 0.013); cut out with its true mask and set on white, 0.856;
cut out by saliency, 0.381 (`benchmarks/retrieval_bench.py`, photo rows). So a photo query first finds its object
(`cut_photo`):

- "prompt": the user names it (`--prompt 'the red chair'`): the saliency merge below with the saliency map
  multiplied by the prompt's CLIP relevance map (`backend.segment.segment.compute_relevance`, normalised to
  [0, 1]) to the power `relevance_power`: the relevance keeps what the prompt names (a distractor of another
  colour or kind fades), the saliency keeps the relevance map's coarse blob to what stands out from the
  background. Chosen on the benchmark's train split (160 photos, 80 shapes): R@1 0.463 against 0.363 for
  saliency alone. On the test split: 0.438 (0.531 on 128-px photos), where `segment`'s text-guided mask
  (photo-to-3d's) scored 0.369 and saliency alone 0.381;
- "saliency": no prompt: the same proposer's masks merged by a class-agnostic saliency map (`saliency_map`): how
  far each pixel's colour is from every colour on the photo's border (the background prior: the border is
  mostly background), times a centre prior (photos are framed on their subject), after a light blur against
  sensor noise. The seed's merge (`merge.py`) unites the proposals mostly inside the salient region, and the
  connected part nearest the centre is kept (a distractor beside the object is dropped);
- "raw": the whole photo, on request (`raw=True`: `--raw-photo`, request param `raw_photo`), or as the fall-back.

The object is then cropped to a square around its mask's box, grown by `margin`, everything off the mask white
(`object_crop`, shared with `photo-to-3d`): the index's views are rendered on white.

Nothing found (the prompt matches no region, no salient region): the raw photo is embedded and `PhotoCut.note`
says so and how to do better; a search still answers, as a photo query did before. A blank photo (one colour,
nothing to find or embed) is an InvalidInputError.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from backend.errors import InvalidInputError
from backend.segment.merge import MergeConfig, merge_masks
from backend.segment.segment import (
    SegmentConfig, check_image, check_prompt, plan_proposer, resize_image, resize_map, upscale_mask, working_size,
)

CUT_METHODS = ("prompt", "saliency", "raw")
"""How a photo query's object was found (`PhotoCut.method`)."""
BLANK_RANGE = 2.0 / 255.0
"""A photo whose every channel spans less than this is blank: one colour, no object."""


@dataclass
class SaliencyConfig:
    """The class-agnostic object finder used when no prompt is given."""

    work_side: int = 128
    """The longer side the photo is resized to for the saliency map and the superpixel proposals (the objects of
    a photo query are coarse: finer costs time and follows noise)."""
    blur: float = 1.0
    """Gaussian blur (pixels at the working size) before the colour distances, against sensor noise."""
    border: float = 0.08
    """Width of the border band, as a fraction of the shorter side, whose colours model the background."""
    centre_sigma: float = 0.25
    """Standard deviation of the centre prior, as a fraction of each side (0.25 beat 0.35 by 0.04 IoU)."""
    threshold: float = 0.3
    """The salient region is where the map reaches this fraction of its peak (the merge's relative threshold;
    0.3 beat 0.4 and 0.5 by 0.03-0.05 IoU with the true mask on world photos)."""
    central_component: bool = True
    """Keep only the connected part of the merged mask that lies nearest the centre."""
    min_area: float = 0.002
    """A mask covering less of the photo than this counts as nothing found."""
    min_contrast: float = 10.0
    """Nothing is salient when no pixel's colour is further than this (CIELAB ΔE, after the blur) from every border
    colour: a plain or smoothly shaded photo, whose normalised map would be noise."""

    def check(self) -> None:
        """Raises InvalidInputError for a setting out of range."""
        for name, low, high in (("work_side", 32, 1024), ("blur", 0.0, 10.0), ("border", 0.01, 0.45),
                                ("centre_sigma", 0.05, 10.0), ("threshold", 0.0, 1.0), ("min_area", 0.0, 0.5),
                                ("min_contrast", 0.0, 100.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise InvalidInputError(f"saliency {name} must be a number in [{low}, {high}], got {value!r}")


@dataclass
class PhotoQueryConfig:
    """How a photo query is cut out before it is embedded."""

    margin: float = 0.08
    """The object's box is grown by this fraction of its longer side on every side (photo-to-3d's default)."""
    relevance_power: float = 0.5
    """With a prompt, the merge map is saliency x relevance ** relevance_power (module docstring; 0.25 scored the
    same, 1.0 lower: R@1 0.425)."""
    saliency: SaliencyConfig = field(default_factory=SaliencyConfig)
    """The object finder without a prompt."""
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    """The proposer both paths use (SAM when its weights are here, else superpixels) and, with a prompt, the
    relevance map's settings (`relevance`)."""

    def check(self) -> None:
        """Raises InvalidInputError for a setting out of range."""
        for name, high in (("margin", 1.0), ("relevance_power", 4.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
                raise InvalidInputError(f"{name} must be a number in [0, {high:g}], got {value!r}")
        self.saliency.check()
        self.segment.check()


@dataclass
class PhotoCut:
    """A photo query as it will be embedded, and what was cut."""

    image: np.ndarray
    """[h, w, 3] float32 in [0, 1]: the crop on white (or the whole photo for method 'raw')."""
    method: Literal["prompt", "saliency", "raw"]
    """How the object was found (module docstring)."""
    box: tuple[int, int, int, int] | None
    """The mask's box (x0, y0, x1, y1) in pixels of the photo, x1/y1 exclusive; None for 'raw'."""
    area_fraction: float
    """The mask's share of the photo (1.0 for 'raw')."""
    note: str = ""
    """A sentence for the user: why the raw photo was used, which proposer stood in; '' when nothing to say."""
    segmenter: str = ""
    """The segmenter that found the mask ('sam vit_b + saliency', 'superpixels (no SAM weights) + saliency x
    dense-clip' with a prompt), '' for 'raw'."""
    mask: np.ndarray | None = field(default=None, repr=False)
    """[H, W] bool at the photo's size (None for 'raw')."""

    def as_dict(self) -> dict:
        """The JSON fields a search reports (`cut`)."""
        return {"method": self.method, "box": list(self.box) if self.box is not None else None,
                "area_fraction": round(float(self.area_fraction), 4), "segmenter": self.segmenter, "note": self.note}


def object_crop(image: np.ndarray, mask: np.ndarray, margin: float = 0.08) -> np.ndarray:
    """The masked object cropped to a square around its box (grown by `margin`), everything else white.

    image: [H, W, 3|4] float in [0, 1]; mask: [H, W] bool. InvalidInputError for an empty mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if image.shape[:2] != mask.shape:
        raise ValueError(f"the mask {mask.shape} does not match the image {image.shape[:2]}")
    if not mask.any():
        raise InvalidInputError("the mask is empty: there is no object to look up",
                                hint="try another prompt, or click a point on the object")
    top, left, bottom, right = _box(mask)
    side = int(np.ceil(max(bottom - top, right - left) * (1 + 2 * margin)))
    cy, cx = (top + bottom) / 2, (left + right) / 2
    y0, x0 = int(round(cy - side / 2)), int(round(cx - side / 2))
    out = np.ones((side, side, 3), dtype=np.float32)
    # The part of the square inside the image.
    sy0, sx0 = max(y0, 0), max(x0, 0)
    sy1, sx1 = min(y0 + side, mask.shape[0]), min(x0 + side, mask.shape[1])
    region = mask[sy0:sy1, sx0:sx1]
    pixels = np.asarray(image[sy0:sy1, sx0:sx1, :3], dtype=np.float32)
    out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = np.where(region[..., None], pixels, 1.0)
    return out


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of a non-empty mask, bottom/right exclusive."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _centre_prior(height: int, width: int, sigma: float) -> np.ndarray:
    yy = (np.arange(height, dtype=np.float32) + 0.5) / height - 0.5
    xx = (np.arange(width, dtype=np.float32) + 0.5) / width - 0.5
    return np.exp(-(yy[:, None] ** 2 + xx[None, :] ** 2) / (2.0 * sigma ** 2)).astype(np.float32)


def saliency_map(image: np.ndarray, config: SaliencyConfig | None = None) -> np.ndarray:
    """[h, w, 3] float RGB in [0, 1] -> [h, w] float32 in [0, 1]: border-colour distance x centre prior.

    Each pixel's CIELAB distance to the nearest of (up to 512) colours sampled from the border band: background
    colours, gradients included, recur on the border; an object's colours mostly do not. All zeros when no
    distance reaches `config.min_contrast` (nothing stands out).
    """
    from scipy import ndimage
    from skimage.color import rgb2lab

    config = config or SaliencyConfig()
    x = np.asarray(image[..., :3], np.float64)
    if config.blur > 0:
        x = ndimage.gaussian_filter(x, (config.blur, config.blur, 0))
    lab = rgb2lab(np.clip(x, 0.0, 1.0)).astype(np.float32)
    height, width = lab.shape[:2]
    band = max(1, int(round(config.border * min(height, width))))
    border = np.concatenate([lab[:band].reshape(-1, 3), lab[-band:].reshape(-1, 3),
                             lab[:, :band].reshape(-1, 3), lab[:, -band:].reshape(-1, 3)])
    border = border[::max(1, len(border) // 512)]
    pixels = torch.from_numpy(lab.reshape(-1, 3))
    distance = torch.cdist(pixels, torch.from_numpy(np.ascontiguousarray(border))).min(dim=1).values.numpy()
    if float(distance.max()) < config.min_contrast:
        return np.zeros((height, width), np.float32)
    values = distance.reshape(height, width) * _centre_prior(height, width, config.centre_sigma)
    peak = float(values.max())
    return (values / peak if peak > 0 else values).astype(np.float32)


def central_part(mask: np.ndarray) -> np.ndarray:
    """The connected part (8-connected) of a mask with the most centre-prior weight."""
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count <= 1:
        return mask
    weight = _centre_prior(*mask.shape, 0.25)
    scores = ndimage.sum(weight, labels, index=np.arange(1, count + 1))
    return labels == 1 + int(np.argmax(scores))


def _proposals(work: np.ndarray, config: SegmentConfig, device: str | torch.device):
    """The segmenter's candidate masks for the working image: SAM's when its weights are here, else superpixels
    (`plan_proposer` decides, as `segment` does)."""
    from backend.segment.sam import load_sam, propose_sam
    from backend.segment.superpixels import propose_superpixels

    plan = plan_proposer(config)
    if plan.kind == "sam":
        loaded = load_sam(plan.path, plan.sam_type, device)
        proposals, _ = propose_sam(loaded, np.round(work * 255.0).astype(np.uint8), config.sam)
        return proposals, plan.fallback
    return propose_superpixels(work, config.superpixels, fallback=plan.fallback), plan.fallback


def salient_mask(image: np.ndarray, config: PhotoQueryConfig | None = None,
                 device: str | torch.device = "cpu", prompt: str | None = None,
                 clip: Any = None) -> tuple[np.ndarray, str, bool]:
    """(mask [H, W] bool at the photo's size (all False when nothing found), segmenter label, whether superpixels
    stood in for missing SAM weights): the class-agnostic object finder, or with `prompt` (and `clip`) the
    saliency weighted by the prompt's relevance (module docstring)."""
    config = config or PhotoQueryConfig()
    height, width = image.shape[:2]
    work = np.ascontiguousarray(resize_image(np.asarray(image[..., :3], np.float32),
                                             working_size(height, width, config.saliency.work_side)))
    saliency = saliency_map(work, config.saliency)
    weighting = "saliency"
    if prompt is not None:
        from backend.segment import segment as text_segment  # the module: tests replace its relevance seam

        relevance, relevance_method = text_segment.compute_relevance(work, prompt, clip, config.segment.relevance,
                                                                      device)
        if relevance.shape != work.shape[:2]:
            relevance = resize_map(relevance, work.shape[:2])
        low, high = float(relevance.min()), float(relevance.max())
        relevance = (relevance - low) / (high - low) if high > low else np.zeros_like(relevance)
        saliency = saliency * np.power(relevance, config.relevance_power, dtype=np.float32)
        peak = float(saliency.max())
        saliency = saliency / peak if peak > 0 else saliency
        weighting = f"saliency x {relevance_method}"
    proposals, fallback = _proposals(work, config.segment, device)
    size = tuple(proposals.masks.shape[1:])
    merged = merge_masks(proposals.masks, saliency if size == work.shape[:2] else resize_map(saliency, size),
                         MergeConfig(relevance_threshold=config.saliency.threshold))
    mask = merged.mask
    if mask.any() and config.saliency.central_component:
        mask = central_part(mask)
    return upscale_mask(mask, (height, width)), f"{proposals.method} + {weighting}", fallback


def load_photo(photo: Any) -> np.ndarray:
    """A photo as encoded bytes, a path, or an array ([H, W, 3|4] float in [0, 1] or uint8) -> [H, W, 3] float32
    in [0, 1] (transparent pixels over white); InvalidInputError for anything else and for a blank photo."""
    if isinstance(photo, (bytes, bytearray, memoryview, str, os.PathLike)):
        from backend.images import load_image

        photo = load_image(bytes(photo) if not isinstance(photo, (str, os.PathLike)) else photo, what="photo",
                           keep_alpha=True)
    array = np.asarray(photo)
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InvalidInputError(f"the photo must be [H, W, 3] or [H, W, 4], got shape {array.shape}")
    array = check_image(np.asarray(array, np.float32) if np.issubdtype(array.dtype, np.floating) else array)
    if array.shape[2] == 4:
        array = array[..., :3] * array[..., 3:] + (1.0 - array[..., 3:])
    array = np.ascontiguousarray(array, np.float32)
    spread = array.reshape(-1, 3).max(axis=0) - array.reshape(-1, 3).min(axis=0)
    if float(spread.max()) < BLANK_RANGE:
        raise InvalidInputError("the photo is blank (a single colour): there is no object in it to look up",
                                hint="send a photo of the object")
    return array


def cut_photo(photo: Any, clip: Any = None, prompt: str | None = None, raw: bool = False,
              config: PhotoQueryConfig | None = None, device: str | torch.device = "cpu") -> PhotoCut:
    """The photo query as it will be embedded (module docstring): the object found by saliency (weighted by
    `prompt`'s relevance map with `clip` when a prompt is given), cropped on white; or the whole photo when `raw`.

    photo: encoded bytes, a path, or an [H, W, 3|4] array. InvalidInputError for a photo that cannot be read, a
    blank photo, a bad prompt, and a prompt given with `raw` (it would be ignored); a prompt needs `clip`.
    Nothing found is not an error: the raw photo, with a note.
    """
    config = config or PhotoQueryConfig()
    config.check()
    if prompt is not None:
        prompt = check_prompt(prompt)
        if raw:
            raise InvalidInputError("a segment prompt was given with the raw-photo flag, which embeds the whole "
                                    "photo and ignores it", hint="drop --raw-photo to cut out what the prompt names, "
                                                                 "or drop --prompt")
        if clip is None:
            raise ValueError("cut_photo needs the CLIP for a prompt's relevance map")
    image = load_photo(photo)
    if raw:
        return PhotoCut(image=image, method="raw", box=None, area_fraction=1.0)
    mask, segmenter, fallback = salient_mask(image, config, device, prompt=prompt, clip=clip)
    method = "prompt" if prompt is not None else "saliency"
    note = ""
    if fallback:
        from backend.segment.sam import no_weights_note

        note = no_weights_note()
    area = float(mask.mean())
    if area < config.saliency.min_area and prompt is not None:
        return _raw_fallback(image, f"no mask found for {prompt!r} (nothing it names stands out from the photo's "
                                    "background); the whole photo was embedded instead",
                             "try another prompt, or crop the photo to the object")
    if area < config.saliency.min_area:
        return _raw_fallback(image, "no object stands out from the photo's background; the whole photo was "
                                    "embedded instead", "name the object with --prompt, or crop the photo to it")
    top, left, bottom, right = _box(mask)
    return PhotoCut(image=object_crop(image, mask, config.margin), method=method, box=(left, top, right, bottom),
                    area_fraction=area, note=note, segmenter=segmenter, mask=mask)


def _raw_fallback(image: np.ndarray, why: str, hint: str) -> PhotoCut:
    return PhotoCut(image=image, method="raw", box=None, area_fraction=1.0, note=f"{why} (hint: {hint})")
