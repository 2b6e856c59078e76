"""A texture feature space that needs no trained weights: multi-scale random shallow convolutions, added to the
NNFM loss (as extra layers of its bank) and/or as a Gram-statistics term.

A single layer of random filters with a ReLU, applied at several scales, carries enough second-order statistics
to synthesise natural textures (Ustyuzhaninov, Brendel, Gatys & Bethge 2017, "What does it take to generate
natural textures?"). The restyler's feature network is a CLIP image tower, and without the real CLIP-RN50
weights (the small domain CLIP, trained on 64 px renders of the procedural world) its features keep the
style's colours but lose its pattern. Here each level l of an image pyramid (2 x 2 mean pooling, l = 0 ..
levels - 1) goes through its own bank of `channels` seeded random k x k filters and a ReLU, so the receptive
fields run from k to k * 2^(levels - 1) pixels; the maps are those of one fixed, frozen network (seeded), so
a style image and a render are described alike.

Gram term: for every view and level, the Gram matrix of the render's features over the object's pixels (the
coverage, eroded by the filter's reach so no background enters) against the mean Gram matrix of the style
images, as a squared Frobenius distance relative to the style's norm.

Sliced Wasserstein term: the same features of the render and of the style images projected on random
directions, sorted, and compared quantile by quantile (the whole distribution along each direction, which keeps
two flat colours with sharp edges apart from a blur of the same covariance).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from backend.errors import InvalidInputError

TextureMode = Literal["off", "nnfm", "gram", "nnfm+gram", "swd", "gram+swd"]
TEXTURE_MODES: tuple[str, ...] = ("off", "nnfm", "gram", "nnfm+gram", "swd", "gram+swd")


@dataclass(frozen=True)
class TextureTermConfig:
    """The random-feature texture term of a restyle run (off by default in `RestyleConfig`; presets set it)."""

    mode: TextureMode = "off"
    """"off": CLIP features only (the paper); "nnfm": the random features join the NNFM bank as extra layers;
    "gram": a Gram-statistics loss on them; "nnfm+gram": both; "swd": a sliced Wasserstein loss on them (the
    distribution of the features along random directions, not only its second moments); "gram+swd": both."""
    levels: int = 4
    """Pyramid levels (each halves the image): receptive fields up to kernel * 2^(levels - 1) pixels."""
    channels: int = 48
    """Random filters per level."""
    kernel: int = 7
    """Filter side in pixels (odd)."""
    gram_weight: float = 2e3
    """Weight of the Gram term (relative Frobenius distance, about 1 before optimisation) in the objective,
    beside lambda_S * NNFM."""
    seed: int = 0
    """Seed of the random filters (the same seed gives the same feature space)."""
    swd_weight: float = 2e3
    """Weight of the sliced Wasserstein term (relative to the style's spread along the directions, about 1
    before optimisation) in the objective."""
    spectrum_weight: float = 0.0
    """Weight of the amplitude-spectrum term on the unlit renders (`backend.stylize.spectrum`, 1 for a plain
    render, 0 at the style's spectrum); 0 turns it off. It runs in every mode but "off"."""
    slices: int = 32
    """Random directions the sliced Wasserstein term projects the features on (drawn afresh every step)."""
    colour: bool = False
    """Append the level's (pooled) image itself, 3 channels in [-1, 1], to its maps: the Gram matrix then holds
    the colours' second moments and which colours each filter fires on (zero-mean filters alone ignore the
    mean colour)."""

    def check(self) -> None:
        """Raises InvalidInputError naming the setting and the fix for values a run cannot use."""
        if self.mode not in TEXTURE_MODES:
            raise InvalidInputError(f"unknown texture mode {self.mode!r}", hint=f"use one of {', '.join(TEXTURE_MODES)}")
        if isinstance(self.levels, bool) or not isinstance(self.levels, int) or not 1 <= self.levels <= 6:
            raise InvalidInputError(f"texture levels must be an integer in [1, 6], got {self.levels!r}",
                                    hint="4 levels of 7 px filters reach 56 px patterns")
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) or not 4 <= self.channels <= 512:
            raise InvalidInputError(f"texture channels must be an integer in [4, 512], got {self.channels!r}",
                                    hint="48 random filters per level describe two- and three-colour patterns")
        if isinstance(self.kernel, bool) or not isinstance(self.kernel, int) or self.kernel < 3 or self.kernel > 31 or self.kernel % 2 == 0:
            raise InvalidInputError(f"texture kernel must be an odd integer in [3, 31], got {self.kernel!r}",
                                    hint="odd sides keep the maps centred; 9 is the draft preset's")
        for name, hint in (("gram_weight", "0 turns the Gram term off; use mode 'nnfm' for the NNFM layers alone"),
                           ("swd_weight", "0 turns the sliced Wasserstein term off"),
                           ("spectrum_weight", "0 turns the spectrum term off")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise InvalidInputError(f"texture {name} must be a number >= 0, got {value!r}", hint=hint)
        if isinstance(self.slices, bool) or not isinstance(self.slices, int) or not 1 <= self.slices <= 1024:
            raise InvalidInputError(f"texture slices must be an integer in [1, 1024], got {self.slices!r}",
                                    hint="32 random directions a step are the draft preset's")

    @property
    def matches(self) -> bool:
        """Whether the random features join the NNFM bank."""
        return self.mode in ("nnfm", "nnfm+gram")

    @property
    def grams(self) -> bool:
        """Whether the Gram term runs."""
        return self.mode in ("gram", "nnfm+gram", "gram+swd") and self.gram_weight > 0

    @property
    def sliced(self) -> bool:
        """Whether the sliced Wasserstein term runs."""
        return self.mode in ("swd", "gram+swd") and self.swd_weight > 0


class RandomTextureFeatures:
    """images [B, 3, H, W] float in [0, 1] -> one [B, channels (+ 3 with `colour`), H / 2^l, W / 2^l] ReLU map
    per level l, differentiable with respect to the images; the filters are seeded, frozen and zero-mean."""

    kind = "random"

    def __init__(self, config: TextureTermConfig, device: torch.device | str = "cpu"):
        config.check()
        self.config = config
        self.device = torch.device(device)
        generator = torch.Generator().manual_seed(config.seed)
        k = config.kernel
        self.weights = []
        for _ in range(config.levels):
            w = torch.randn(config.channels, 3, k, k, generator=generator)
            # Zero mean per filter: a flat area gives 0 (no response to the mean colour, which the palette term
            # and the bias handle); unit norm: every filter counts alike in the Gram and cosine terms.
            w = w - w.mean(dim=(1, 2, 3), keepdim=True)
            self.weights.append((w / w.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).to(self.device))
        # A small random bias, so the ReLU keeps part of the colour (a flat patch is not all zeros).
        self.biases = [0.1 * torch.randn(config.channels, generator=generator).to(self.device)
                       for _ in range(config.levels)]
        self.layers = tuple(f"level{i}" for i in range(config.levels))

    @property
    def name(self) -> str:
        c = self.config
        return f"random{c.channels}x{c.kernel}:{'+'.join(self.layers)}"

    @property
    def min_side(self) -> int:
        """The shortest image side every level can take."""
        return self.config.kernel * 2 ** (self.config.levels - 1)

    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise InvalidInputError(f"random texture features take [B, 3, H, W] images, got {shape}",
                                    hint="add a batch axis with images[None] / drop alpha with images[:, :3]")
        if min(images.shape[-2:]) < self.min_side:
            raise InvalidInputError(f"random texture features need images of at least {self.min_side} px a side, "
                                    f"got {tuple(images.shape[-2:])}", hint="use fewer texture levels or larger renders")
        x = 2.0 * images.to(self.device, torch.float32) - 1.0
        out = []
        for level, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            if level:
                x = F.avg_pool2d(x, 2)
            maps = F.relu(F.conv2d(x, weight, bias, padding=self.config.kernel // 2))
            out.append(torch.cat([maps, x], dim=1) if self.config.colour else maps)
        return out

    def sample(self, images: torch.Tensor, alpha: torch.Tensor, count: int,
               generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The features at `count` positions per view and level (at most a quarter of the level's), drawn
        stratified (`draw_positions`) among the positions whose filter sees only the object (`coverage_at`): per
        level, (rows [B, N, C'], has [B]: whether the view has such a position; its rows are then meaningless).
        The same maps as `__call__`, computed at the drawn positions only: at a 256 px level, 1024 (`TERM_SAMPLES`)
        of its 65,536 filter positions per view."""
        x = 2.0 * images.to(self.device, torch.float32) - 1.0
        reach = self.config.kernel // 2
        out = []
        for level, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            if level:
                x = F.avg_pool2d(x, 2)
            # A level of h x w positions gets at most a quarter of them in draws (coarse levels have few).
            drawn = max(1, min(count, x.shape[-2] * x.shape[-1] // 4))
            index, has = draw_positions(coverage_at(alpha, tuple(x.shape[-2:]), reach), drawn, generator)
            patches = gather_patches(x, index, self.config.kernel)  # [B, N, k k 3]
            rows = F.relu(conv_rows(patches, weight, bias))
            if self.config.colour:
                centre = patches.unflatten(-1, (-1, 3))[:, :, (self.config.kernel**2) // 2]
                rows = torch.cat([rows, centre], dim=-1)
            out.append((rows, has))
        return out


def draw_positions(weight: torch.Tensor, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` positions per view where `weight` [B, 1, h, w] is 1, stratified: the view's n allowed positions,
    in raster order, are cut into `count` runs of n / count and one position is drawn uniformly inside each, so
    the draws spread evenly over the object (a lower-variance estimate of its statistics than independent draws)
    without the lattice that every k-th position would lay over a periodic pattern. Returns indices [B, count]
    into h * w, and has [B] (False: no allowed position; its indices are 0)."""
    flat = weight.flatten(1)
    total = flat.cumsum(dim=1)
    has = total[:, -1] > 0
    jitter = torch.rand(flat.shape[0], count, generator=generator)
    steps = (torch.arange(count, dtype=torch.float32) + jitter) / count  # [B, count] in (0, 1), one per run
    draws = steps.to(flat.device) * total[:, -1:].clamp(min=1.0)
    index = torch.searchsorted(total, draws, right=True).clamp(max=flat.shape[1] - 1)
    return torch.where(has[:, None], index, torch.zeros_like(index)), has


def gather_patches(x: torch.Tensor, index: torch.Tensor, kernel: int) -> torch.Tensor:
    """The k x k patches of `x` [B, C, h, w] (zero-padded) centred at `index` [B, N] (into h * w): [B, N, k k C],
    ordered as `conv_rows` expects a conv2d weight [out, C, k, k]."""
    batch, channels, height, width = x.shape
    reach = kernel // 2
    padded = F.pad(x, (reach, reach, reach, reach))
    size = padded.shape[-2] * padded.shape[-1]
    pixels = padded.permute(0, 2, 3, 1).reshape(batch * size, channels)  # channels last: one row per pixel
    stride = width + 2 * reach
    dy, dx = torch.meshgrid(torch.arange(kernel, device=x.device), torch.arange(kernel, device=x.device),
                            indexing="ij")
    offsets = (dy * stride + dx).flatten()  # [k k]
    corner = (index // width) * stride + index % width  # the patch's top-left in the padded image
    where = corner[..., None] + offsets + (torch.arange(batch, device=x.device) * size)[:, None, None]
    return pixels.index_select(0, where.flatten()).reshape(batch, index.shape[1], kernel * kernel * channels)


def conv_rows(patches: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """conv2d(x, weight, bias) at the patches' centres: [B, N, k k C] patches (`gather_patches`) -> [B, N, out]."""
    return patches @ weight.permute(0, 2, 3, 1).flatten(1).T + bias


class CombinedFeatures:
    """Two extractors side by side: the maps of `first`, then those of `second` (one NNFM bank over both)."""

    def __init__(self, first, second):
        self.first, self.second = first, second
        self.layers = tuple(first.layers) + tuple(second.layers)
        self.device = first.device

    @property
    def name(self) -> str:
        return f"{self.first.name}+{self.second.name}"

    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.first(images) + self.second(images)


def masked_gram(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per view, the Gram matrix of `features` over the pixels, weighted by `weight`.

    features: [B, C, h, w]; weight: [B, 1, h, w] in [0, 1]. Returns [B, C, C]: sum(w f f^T) / sum(w).
    """
    flat = features.flatten(2)  # [B, C, N]
    w = weight.flatten(2)  # [B, 1, N]
    return torch.bmm(flat * w, flat.transpose(1, 2)) / w.sum(dim=2, keepdim=True).clamp(min=1.0)


def coverage_at(alpha: torch.Tensor, size: tuple[int, int], reach: int) -> torch.Tensor:
    """[B, 1, H, W] coverage -> [B, 1, h, w] at a level's size, eroded by `reach` feature pixels so that no
    position whose filter sees the background counts (outside the image counts as covered)."""
    small = alpha.float() if tuple(alpha.shape[-2:]) == tuple(size) else F.adaptive_avg_pool2d(alpha.float(), size)
    inside = (small > 0.99).float()
    if reach > 0:  # every position within `reach` inside too: a full box sum (a min filter, done in O(h w))
        inside = (box_sum(inside, reach, outside=1.0) > (2 * reach + 1) ** 2 - 0.5).float()
    return inside


def box_sum(x: torch.Tensor, reach: int, outside: float = 0.0) -> torch.Tensor:
    """[B, C, h, w] -> the sum over each position's (2 reach + 1)^2 box, positions outside the image holding
    `outside`; from an integral image, so its cost does not grow with the box (exact for sums below 2^24)."""
    side = 2 * reach + 1
    padded = F.pad(x, (reach + 1, reach, reach + 1, reach), value=outside)
    padded[..., 0, :] = 0.0  # the integral image's leading zero row and column
    padded[..., :, 0] = 0.0
    table = padded.cumsum(dim=-1).cumsum(dim=-2)
    return table[..., side:, side:] - table[..., :-side, side:] - table[..., side:, :-side] + table[..., :-side, :-side]


class GramTerm:
    """The Gram loss against a set of style images, on `features` (a `RandomTextureFeatures`)."""

    def __init__(self, features: RandomTextureFeatures, styles: Sequence[torch.Tensor]):
        if not styles:
            raise InvalidInputError("no style image was given", hint="pass at least one style image")
        self.features = features
        with torch.no_grad():
            per_image = []
            for image in styles:
                maps = features(image)
                per_image.append([masked_gram(m, torch.ones_like(m[:, :1]))[0] for m in maps])
            self.targets = [torch.stack(level).mean(dim=0) for level in zip(*per_image)]

    def __call__(self, maps: list[torch.Tensor], alpha: torch.Tensor) -> torch.Tensor:
        """0-d loss: mean over views and levels of |G(render) - G(style)|_F^2 / |G(style)|_F^2.

        maps: the render's features per level (from `self.features`); alpha: [B, 1, H, W] coverage of the render.
        Views in which a level has no fully covered position add nothing.
        """
        reach = self.features.config.kernel // 2
        losses = []
        for fmap, target in zip(maps, self.targets):
            weight = coverage_at(alpha, tuple(fmap.shape[-2:]), reach)
            gram = masked_gram(fmap, weight)
            has = (weight.flatten(1).sum(dim=1) > 0).float()
            distance = (gram - target).square().sum(dim=(1, 2)) / target.square().sum().clamp(min=1e-12)
            losses.append((distance * has).sum() / has.sum().clamp(min=1.0))
        return torch.stack(losses).mean()

    def of_samples(self, samples: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """The same loss from the features at drawn positions (`RandomTextureFeatures.sample`): each view's Gram
        matrix is estimated from its rows (unbiased), which costs a fraction of the full maps."""
        losses = []
        for (rows, has), target in zip(samples, self.targets):
            gram = rows.transpose(1, 2) @ rows / rows.shape[1]
            distance = (gram - target).square().sum(dim=(1, 2)) / target.square().sum().clamp(min=1e-12)
            weight = has.float()
            losses.append((distance * weight).sum() / weight.sum().clamp(min=1.0))
        return torch.stack(losses).mean()


TERM_SAMPLES = 1024
"""Positions per view and level at which a restyle step computes the random features for its Gram and sliced
Wasserstein terms (`RandomTextureFeatures.sample`): the full maps of a 256 px render hold 65536 at level 0."""

SWD_SAMPLES = 4096
"""Positions per view and level the sliced Wasserstein term compares (a random subset, drawn each call, of a
larger level's covered positions: the sort, not the features, dominates its cost); the style keeps 4x as many."""


class SlicedWassersteinTerm:
    """The sliced Wasserstein loss against a set of style images, on `features` (a `RandomTextureFeatures`):
    per view and level, the render's features over the object's covered positions and the style images'
    features are projected on `slices` random unit directions, sorted, and compared quantile by quantile
    (Heitz, Vanhoey, Chambon & Belcour 2021, "A Sliced Wasserstein Loss for Neural Texture Synthesis"). Unlike
    the Gram matrix, which keeps only second moments, this matches each projection's whole distribution: two
    flat colours with sharp edges rather than any mix of the same covariance. Each call draws its directions
    afresh (a generator seeded with the features' seed, so a run is repeatable) from a pool of `POOL_FACTOR` x
    `slices` per level whose style projections were sorted once: sorting the style's projections every step
    cost more than the rest of the term."""

    POOL_FACTOR = 8

    def __init__(self, features: RandomTextureFeatures, styles: Sequence[torch.Tensor]):
        if not styles:
            raise InvalidInputError("no style image was given", hint="pass at least one style image")
        self.features = features
        self.slices = features.config.slices
        self.generator = torch.Generator().manual_seed(features.config.seed + 7919)
        pool = self.POOL_FACTOR * self.slices
        self.directions, self.sorted_style, self.spread = [], [], []
        with torch.no_grad():
            per_image = [[m[0].flatten(1).T for m in features(image)] for image in styles]
            for level in zip(*per_image):
                target = self._sample(torch.cat(level, dim=0), 2 * SWD_SAMPLES)  # [M, C]
                directions = torch.randn(target.shape[1], pool, generator=self.generator).to(target.device)
                directions = directions / directions.norm(dim=0, keepdim=True)
                projected = (target @ directions).T.contiguous()  # [pool, M]
                self.directions.append(directions)
                self.sorted_style.append(projected.sort(dim=1).values)
                self.spread.append(projected.var(dim=1))

    def _draw(self, level: int, count: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This call's directions of `level` [C, slices], the style's sorted projections on them at `count`
        evenly spaced quantiles [slices, count], and the style's mean variance along them (the loss's scale)."""
        chosen = self._choice(self.directions[level].shape[1], self.slices, self.directions[level].device)
        style = self.sorted_style[level][chosen]
        at = ((torch.arange(count, device=style.device) + 0.5) * (style.shape[1] / count)).long()
        scale = self.spread[level][chosen].mean().clamp(min=1e-12)
        return self.directions[level][:, chosen].to(device), style[:, at].to(device), scale.to(device)

    def __call__(self, maps: list[torch.Tensor], alpha: torch.Tensor) -> torch.Tensor:
        """0-d loss: mean over views and levels of the mean squared difference of the sorted projections,
        relative to the style's variance along the same directions. maps: the render's features per level;
        alpha: [B, 1, H, W] coverage. Views in which a level has no fully covered position add nothing."""
        reach = self.features.config.kernel // 2
        losses = []
        for level, fmap in enumerate(maps):
            weight = coverage_at(alpha, tuple(fmap.shape[-2:]), reach)
            for view in range(fmap.shape[0]):
                keep = weight[view, 0].flatten() > 0
                count = int(keep.sum())
                if count == 0:
                    continue
                chosen = keep.nonzero()[:, 0]
                if count > SWD_SAMPLES:
                    chosen = chosen[self._choice(count, SWD_SAMPLES, fmap.device)]
                    count = SWD_SAMPLES
                directions, style, scale = self._draw(level, count, fmap.device)
                projected = (directions.T @ fmap[view].flatten(1)[:, chosen]).sort(dim=1).values  # [slices, N]
                losses.append((projected - style).square().mean() / scale)
        if not losses:
            return maps[0].sum() * 0.0
        return torch.stack(losses).mean()

    def of_samples(self, samples: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """The same loss from the features at drawn positions (`RandomTextureFeatures.sample`), all views at
        once: each view's rows stand for its distribution."""
        losses = []
        for level, (rows, has) in enumerate(samples):
            directions, style, scale = self._draw(level, rows.shape[1], rows.device)
            projected = (rows @ directions).transpose(1, 2).sort(dim=2).values  # [B, slices, N]
            distance = (projected - style).square().mean(dim=(1, 2)) / scale
            weight = has.float()
            losses.append((distance * weight).sum() / weight.sum().clamp(min=1.0))
        return torch.stack(losses).mean()

    def _choice(self, count: int, size: int, device: torch.device) -> torch.Tensor:
        """`size` distinct indices in [0, count), drawn from the term's generator."""
        return torch.randperm(count, generator=self.generator)[:size].to(device)

    def _sample(self, rows: torch.Tensor, size: int) -> torch.Tensor:
        """At most `size` of `rows` [M, C], drawn from the term's generator (all of them when M <= size)."""
        return rows if len(rows) <= size else rows[self._choice(len(rows), size, rows.device)]
