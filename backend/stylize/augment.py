"""Image augmentations for CLIP losses on renders: random resized crop and random perspective, batched.

Torch only and differentiable with respect to the images (the crop boxes and corner jitter are
random draws, not learned). Each image of a batch gets its own draws from the caller's
`torch.Generator`, so a seed reproduces a whole run. The crop and the perspective warp are both
projective maps, so they are composed and the images resampled once (one bilinear pass, less blur
than two). Semantics follow torchvision's `RandomResizedCrop` then `RandomPerspective(fill=...)`:
pixels the perspective warp pulls from outside the crop show `fill`.

Coordinates are normalised as in `torch.nn.functional.grid_sample` (align_corners=False): x and y in
[-1, 1] from the left/top edge to the right/bottom edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

CROP_TRIES = 10
"""Draws per image before a crop that does not fit falls back to the whole image (torchvision's rule)."""


@dataclass(frozen=True)
class AugmentConfig:
    """One family of augmentations: a random resized crop followed by a random perspective warp."""

    crop_scale: tuple[float, float] = (1.0, 1.0)
    """Crop area as a fraction of the image area, drawn uniformly in [low, high] (torchvision `scale`).
    (1, 1) keeps the whole image (a global view); (0.1, 0.1) is Text2Mesh's local crop."""
    crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    """Crop aspect ratio (width / height), drawn log-uniformly in [low, high] (torchvision `ratio`)."""
    perspective_p: float = 0.8
    """Probability that an image is also warped by a random perspective."""
    distortion_scale: float = 0.5
    """How far each corner may move inward, as a fraction of the half-size (torchvision `distortion_scale`)."""
    fill: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """RGB in [0, 1] shown where the warp leaves the image (white: the renders' background)."""

    def __post_init__(self) -> None:
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if not 0.0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio must satisfy 0 < low <= high, got {self.crop_ratio}")
        if not 0.0 <= self.perspective_p <= 1.0:
            raise ValueError(f"perspective_p must be in [0, 1], got {self.perspective_p}")
        if not 0.0 <= self.distortion_scale <= 1.0:
            raise ValueError(f"distortion_scale must be in [0, 1], got {self.distortion_scale}")


def _uniform(count: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, generator=generator, dtype=torch.float64)


def random_crop_boxes(count: int, config: AugmentConfig, aspect: float = 1.0,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Random resized-crop boxes.

    count: boxes to draw; aspect: image width / height. Returns [count, 4] float64 (cx, cy, hx, hy):
    centre and half-extents in normalised coordinates (the whole image is (0, 0, 1, 1)). As in
    torchvision, a crop that does not fit after CROP_TRIES draws becomes the whole image.
    """
    low, high = config.crop_scale
    log_ratio = (math.log(config.crop_ratio[0]), math.log(config.crop_ratio[1]))
    area = _uniform(count * CROP_TRIES, low, high, generator).view(count, CROP_TRIES)
    ratio = torch.exp(_uniform(count * CROP_TRIES, *log_ratio, generator)).view(count, CROP_TRIES)
    # Fractions of the image width and height: (w_frac * W) * (h_frac * H) = area * W * H, w / h = ratio.
    w_frac = torch.sqrt(area * ratio / aspect)
    h_frac = torch.sqrt(area * aspect / ratio)
    fits = (w_frac <= 1.0) & (h_frac <= 1.0)
    first = torch.argmax(fits.to(torch.int8), dim=1)  # index of the first fitting draw (0 if none fits)
    any_fit = fits.any(dim=1)
    rows = torch.arange(count)
    hx = torch.where(any_fit, w_frac[rows, first], torch.ones(count, dtype=torch.float64))
    hy = torch.where(any_fit, h_frac[rows, first], torch.ones(count, dtype=torch.float64))
    # Position: uniform over the places where the box fits inside the image.
    cx = (1.0 - hx) * (2.0 * torch.rand(count, generator=generator, dtype=torch.float64) - 1.0)
    cy = (1.0 - hy) * (2.0 * torch.rand(count, generator=generator, dtype=torch.float64) - 1.0)
    return torch.stack([cx, cy, hx, hy], dim=1)


def homographies_from_points(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """The projective maps taking 4 points to 4 points.

    src, dst: [N, 4, 2] float64. Returns [N, 3, 3] float64 H with H @ [src, 1] ~ [dst, 1] (H[2, 2] = 1).
    """
    n = src.shape[0]
    x, y = src[..., 0], src[..., 1]
    u, v = dst[..., 0], dst[..., 1]
    zeros, ones = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, ones, zeros, zeros, zeros, -x * u, -y * u], dim=-1)
    rows_v = torch.stack([zeros, zeros, zeros, x, y, ones, -x * v, -y * v], dim=-1)
    system = torch.cat([rows_u, rows_v], dim=1)  # [N, 8, 8]
    rhs = torch.cat([u, v], dim=1)  # [N, 8]
    coeffs = torch.linalg.solve(system, rhs)
    return torch.cat([coeffs, torch.ones(n, 1, dtype=coeffs.dtype)], dim=1).view(n, 3, 3)


def random_perspectives(count: int, config: AugmentConfig,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Random perspective warps as maps from output to source coordinates (what resampling needs).

    Returns [count, 3, 3] float64. With probability `perspective_p` each image's corners move inward by
    up to `distortion_scale` (independently in x and y, as torchvision does); otherwise the identity.
    """
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
    inward = -corners  # unit steps toward the centre, per corner and axis
    shift = config.distortion_scale * torch.rand(count, 4, 2, generator=generator, dtype=torch.float64)
    moved = corners + inward * shift
    apply = torch.rand(count, generator=generator, dtype=torch.float64) < config.perspective_p
    # The moved corners are where the source corners land in the output: output -> source maps moved -> corners.
    maps = homographies_from_points(moved, corners.expand(count, 4, 2))
    identity = torch.eye(3, dtype=torch.float64).expand(count, 3, 3)
    return torch.where(apply[:, None, None], maps, identity)


def _pixel_grid(size: int, device: torch.device) -> torch.Tensor:
    """[size, size, 3] homogeneous normalised coordinates (x, y, 1) of pixel centres, row 0 at the top."""
    centres = (2.0 * torch.arange(size, device=device, dtype=torch.float32) + 1.0) / size - 1.0
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([x, y, torch.ones_like(x)], dim=-1)


def warp(images: torch.Tensor, boxes: torch.Tensor, perspectives: torch.Tensor, size: int,
         fill: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> torch.Tensor:
    """Crops, resizes and perspective-warps each image in one bilinear resampling.

    images: [N, C, H, W] float (differentiable); boxes: [N, 4] (cx, cy, hx, hy) from `random_crop_boxes`;
    perspectives: [N, 3, 3] output-to-crop maps from `random_perspectives`; size: output side in pixels.
    Returns [N, C, size, size]; pixels the warp takes from outside the crop show `fill`.
    """
    device, dtype = images.device, images.dtype
    grid = _pixel_grid(size, device)  # [S, S, 3]
    maps = perspectives.to(device=device, dtype=torch.float32)
    warped = torch.einsum("nij,hwj->nhwi", maps, grid)
    crop_xy = warped[..., :2] / warped[..., 2:3]  # [N, S, S, 2] in the crop's normalised frame
    inside = (crop_xy.abs() <= 1.0).all(dim=-1, keepdim=True)
    boxes = boxes.to(device=device, dtype=torch.float32)
    source = boxes[:, None, None, :2] + boxes[:, None, None, 2:] * crop_xy
    sampled = F.grid_sample(images, source.to(dtype), mode="bilinear", padding_mode="border", align_corners=False)
    background = torch.tensor(fill, device=device, dtype=dtype)[: images.shape[1]].view(1, -1, 1, 1)
    mask = inside.permute(0, 3, 1, 2).to(dtype)
    return sampled * mask + background * (1.0 - mask)


def augment(images: torch.Tensor, config: AugmentConfig, size: int, count: int = 1,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """`count` independent augmentations of every image.

    images: [B, C, H, W] float in [0, 1] (differentiable). Returns [count * B, C, size, size], augmentation
    major: rows k * B .. (k + 1) * B - 1 are the k-th augmentation of images 0 .. B - 1, so
    `.view(count, B, ...)` groups them. Draws come from `generator` (on the CPU), one set per output image.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    if count < 1 or size < 1:
        raise ValueError(f"count and size must be >= 1, got count={count}, size={size}")
    batch, _, height, width = images.shape
    total = count * batch
    boxes = random_crop_boxes(total, config, aspect=width / height, generator=generator)
    perspectives = random_perspectives(total, config, generator=generator)
    repeated = images.repeat(count, 1, 1, 1) if count > 1 else images
    return warp(repeated, boxes, perspectives, size, config.fill)
