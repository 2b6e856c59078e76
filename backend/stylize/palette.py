"""Colour palettes for the texture restyler's palette term: parsed from the user, or k-means of the style images.

Colours are display RGB (sRGB-encoded) in [0, 1], as images store them. The palette term pulls each
rendered (unlit) pixel toward its nearest palette colour, with a weight that decays over the run so the
style term can add shading and detail once the colours are settled.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np
import torch

from backend.errors import InvalidInputError

MAX_PALETTE_COLORS = 16
"""Most colours a user palette may have."""
WHITE_THRESHOLD = 0.95
"""With mask_white, pixels whose every channel is at least this are left out of `extract_palette`."""

_PALETTE_HINT = "use --palette auto or --palette '#aa3311,#f0e0c0' (1 to 16 colours, each #rrggbb or #rgb)"
_HEX = re.compile(r"#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")


def parse_palette(text: str) -> np.ndarray | None:
    """A user's palette -> [K, 3] float32 display RGB in [0, 1], or None for "auto" (extract from the style).

    Accepts "auto" (any case, surrounding space ignored) or 1 to 16 comma-separated colours, "#rrggbb" or
    "#rgb", the '#' optional and spaces around commas allowed. Raises InvalidInputError naming the bad
    colour and its position.
    """
    stripped = text.strip()
    if stripped.lower() == "auto":
        return None
    if not stripped:
        raise InvalidInputError("the palette is empty", hint=_PALETTE_HINT)
    tokens = [token.strip() for token in stripped.split(",")]
    if len(tokens) > MAX_PALETTE_COLORS:
        raise InvalidInputError(f"the palette has {len(tokens)} colours; at most {MAX_PALETTE_COLORS} are used",
                                hint=_PALETTE_HINT)
    colors = []
    for position, token in enumerate(tokens, start=1):
        match = _HEX.fullmatch(token)
        if match is None:
            what = "is empty" if not token else f"'{token}' is not a hex colour"
            raise InvalidInputError(f"palette colour {position} of {len(tokens)} {what}", hint=_PALETTE_HINT)
        digits = match.group(1)
        if len(digits) == 3:
            digits = "".join(d * 2 for d in digits)  # #abc is #aabbcc
        colors.append([int(digits[i:i + 2], 16) for i in (0, 2, 4)])
    return np.asarray(colors, dtype=np.float32) / 255.0


def to_hex(palette: np.ndarray) -> list[str]:
    """palette: [K, 3] float in [0, 1] -> K strings "#rrggbb" (lower case, rounded)."""
    values = np.clip(np.rint(np.asarray(palette, dtype=np.float64) * 255.0), 0, 255).astype(int)
    return ["#{:02x}{:02x}{:02x}".format(*color) for color in values]


def extract_palette(images: Sequence[np.ndarray | torch.Tensor], count: int = 5, *, seed: int = 0,
                    max_samples: int = 20000, iterations: int = 25, mask_white: bool = False) -> np.ndarray:
    """The `count` main colours of the images together: k-means (k-means++ start) on the CPU.

    images: each [H, W, 3|4] float in [0, 1] (numpy, channels last) or a [3|4, H, W] / [1, 3|4, H, W]
    tensor (channels first); a fourth channel is ignored. At most max_samples pixels are drawn uniformly
    from all images together (with replacement; all pixels when there are fewer), so a larger image weighs
    more. mask_white leaves out near-white pixels (the background a transparent style image was
    composited over), unless that leaves none. Returns [k, 3] float32 cluster means sorted by cluster size,
    largest first, with k == count unless the pixels have fewer distinct colours (then one per colour, no
    duplicates). The same inputs and seed give the same palette.
    """
    if not images:
        raise ValueError("extract_palette needs at least one image")
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    generator = torch.Generator().manual_seed(seed)
    pixels = _sample_pixels([_flat_rgb(image) for image in images], max_samples, generator)
    if mask_white:
        keep = (pixels < WHITE_THRESHOLD).any(dim=1)
        if keep.any():
            pixels = pixels[keep]
    centres = _kmeans_plus_plus(pixels, count, generator)
    labels = _nearest(pixels, centres)
    for _ in range(iterations):
        sums = torch.zeros_like(centres).index_add_(0, labels, pixels)
        sizes = torch.bincount(labels, minlength=len(centres))
        centres = torch.where(sizes[:, None] > 0, sums / sizes.clamp_min(1)[:, None], centres)
        new_labels = _nearest(pixels, centres)
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
    sizes = torch.bincount(labels, minlength=len(centres))
    # A centre no pixel is nearest to (empty, or tied with an earlier one) is not a colour of the images.
    order = torch.argsort(sizes, descending=True, stable=True)
    order = order[sizes[order] > 0]
    return centres[order].clamp(0.0, 1.0).numpy().astype(np.float32)


def nearest_palette_distance(colors: torch.Tensor, palette: torch.Tensor, weights: torch.Tensor | None = None,
                             squared: bool = False) -> torch.Tensor:
    """Mean distance of each colour to its nearest palette colour: a 0-d tensor, differentiable in `colors`.

    colors: [..., 3] float; palette: [K, 3] float (moved to colors' device and dtype); weights: [...]
    non-negative per-colour weights (e.g. an alpha mask) for a weighted mean, 0 when they sum to 0.
    Euclidean RGB distance (the metric), or its square (the loss: its gradient pulls each colour straight
    toward its nearest palette colour, fading as it arrives).
    """
    if colors.shape[-1] != 3 or palette.dim() != 2 or palette.shape[-1] != 3:
        raise ValueError(f"colors must be [..., 3] and palette [K, 3], got {tuple(colors.shape)} "
                         f"and {tuple(palette.shape)}")
    palette = palette.to(colors)
    flat = colors.reshape(-1, 3)
    with torch.no_grad():  # which colour is nearest is a choice, not a function to differentiate
        nearest = _nearest(flat, palette)
    offset = flat - palette[nearest]
    # vector_norm's gradient is 0 (not NaN) where a colour sits exactly on the palette.
    distance = offset.square().sum(dim=1) if squared else torch.linalg.vector_norm(offset, dim=1)
    if weights is None:
        return distance.mean()
    weights = weights.to(distance).expand(colors.shape[:-1]).reshape(-1)
    return (distance * weights).sum() / weights.sum().clamp_min(1e-12)


def palette_weight(step: int, steps: int, start: float, end_fraction: float = 0.1) -> float:
    """The palette term's weight at `step` of 0 .. steps - 1: `start`, cosine-decaying to start * end_fraction.

    The paper starts the weight high (2000) and lowers it during training; a cosine keeps it near `start`
    while the colours settle and near the end value while the style term finishes. One step gives `start`.
    """
    progress = min(max(step / (steps - 1), 0.0), 1.0) if steps > 1 else 0.0
    end = start * end_fraction
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _nearest(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """points [N, 3], centres [K, 3] -> [N] int64 index of the nearest centre (the first of equals)."""
    # The direct difference, not cdist's matrix-product shortcut, whose rounding can pick the wrong one
    # of two close centres.
    return torch.cdist(points, centres, compute_mode="donot_use_mm_for_euclid_dist").argmin(dim=1)


def _flat_rgb(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """One image (see extract_palette) -> [H * W, 3] float32 CPU tensor (a view where the input allows)."""
    if isinstance(image, torch.Tensor):
        tensor = image.detach().cpu().float()
        if tensor.dim() == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.dim() != 3 or tensor.shape[0] not in (3, 4):
            raise ValueError(f"a tensor image must be [3|4, H, W] or [1, 3|4, H, W], got {tuple(image.shape)}")
        return tensor[:3].reshape(3, -1).T
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"an array image must be [H, W, 3|4], got shape {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array[:, :, :3], dtype=np.float32)).reshape(-1, 3)


def _sample_pixels(images: list[torch.Tensor], max_samples: int, generator: torch.Generator) -> torch.Tensor:
    """[N_i, 3] per image -> [min(total, max_samples), 3], drawn uniformly from the images' pixels together."""
    sizes = torch.tensor([len(image) for image in images])
    total = int(sizes.sum())
    if total == 0:
        raise ValueError("extract_palette got images without pixels")
    if total <= max_samples:
        return torch.cat(images)
    picks = torch.randint(total, (max_samples,), generator=generator)  # indices into all pixels, end to end
    ends = sizes.cumsum(0)
    owner = torch.searchsorted(ends, picks, right=True)
    starts = ends - sizes
    return torch.cat([images[i][picks[owner == i] - starts[i]] for i in range(len(images))])


def _kmeans_plus_plus(pixels: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: up to `count` centres, each drawn with probability ∝ squared distance to the
    nearest centre so far; stops early when every pixel already sits on a centre (fewer distinct colours)."""
    first = torch.randint(len(pixels), (1,), generator=generator)
    centres = pixels[first]
    nearest = (pixels - centres[0]).square().sum(dim=1)
    while len(centres) < count and nearest.sum() > 0:
        index = torch.multinomial(nearest, 1, generator=generator)
        centres = torch.cat([centres, pixels[index]])
        nearest = torch.minimum(nearest, (pixels - pixels[index]).square().sum(dim=1))
    return centres
