"""Training data from the world: batches generated on the fly, or a tensor dataset built once.

`sample_batch` makes fresh shapes for every batch (no epoch ever repeats an image);
`build_tensor_dataset` renders a fixed set once (uint8 tensors, savable) for fast epochs. Both
return labels as class indices into CATEGORIES, COLOUR_NAMES and PATTERNS next to the captions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from backend.progress import CancelToken, ProgressFn, no_progress
from backend.world.appearance import COLOURS, PATTERNS
from backend.world.captions import ALL, make_caption
from backend.world.dataset import dataset_seeds, split_shapes
from backend.world.families import CATEGORIES, FAMILIES
from backend.world.shape import WorldShape, make_shape
from backend.world.views import PhotoConfig, SketchConfig, ViewConfig, render_photo, render_sketches, render_views

COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
"""Colour class order for label indices."""
KINDS: tuple[str, ...] = ("render", "sketch", "photo")
"""Image kinds: shaded render over white, line sketch (grey as RGB), photo over clutter."""


@dataclass
class SamplerConfig:
    """What `sample_batch` and `build_tensor_dataset` draw."""

    kinds: tuple[str, ...] = ("render", "sketch")
    """Image kinds to mix (each image's kind drawn uniformly from these)."""
    categories: tuple[str, ...] | None = None
    """Restrict to these categories (default: all registered families)."""
    views_per_shape: int = 2
    """Images drawn from each generated shape in `sample_batch` (more = cheaper per image, less variety)."""
    mention_probability: float = 0.6
    """Each label besides the category is mentioned in a caption with this probability (1.0: full captions)."""
    view: ViewConfig = field(default_factory=ViewConfig)
    """Viewpoints and lights of renders (and of sketches)."""
    sketch: SketchConfig = field(default_factory=SketchConfig)
    """Line drawing style."""
    photo: PhotoConfig = field(default_factory=PhotoConfig)
    """Photo composition."""


@dataclass
class WorldBatch:
    """A batch of images with their captions and labels."""

    images: torch.Tensor
    """[B, H, W, 3] float32 in [0, 1], top row first (permute to [B, 3, H, W] for a CNN)."""
    kinds: list[str]
    """Kind of each image ("render", "sketch", "photo")."""
    captions: list[str]
    """A caption per image (labels mentioned at random, category always)."""
    category: torch.Tensor
    """[B] int64 index into CATEGORIES."""
    colour: torch.Tensor
    """[B] int64 index into COLOUR_NAMES."""
    pattern: torch.Tensor
    """[B] int64 index into PATTERNS."""
    seeds: list[int]
    """Shape seed of each image (`make_shape(seed, category)` rebuilds it)."""
    attributes: list[dict]
    """Family attributes of each image's shape."""


def _check_kinds(kinds) -> tuple[str, ...]:
    kinds = tuple(kinds)
    if not kinds or any(k not in KINDS for k in kinds):
        raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {kinds}")
    return kinds


def _categories(config: SamplerConfig) -> tuple[str, ...]:
    cats = tuple(config.categories or CATEGORIES)
    unknown = [c for c in cats if c not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown categories {unknown}; choose among {', '.join(FAMILIES)}")
    return cats


def shape_images(shape: WorldShape, kinds: list[str], size: int, generator: torch.Generator | None,
                 device: torch.device | str = "cpu", config: SamplerConfig | None = None) -> torch.Tensor:
    """One image per entry of `kinds` (a list such as ["render", "render", "sketch"]), in that order.

    Returns [len(kinds), size, size, 3] float32 in [0, 1]; same-kind images are rendered in one batch.
    """
    config = config or SamplerConfig()
    _check_kinds(kinds)
    out = torch.empty(len(kinds), size, size, 3, device=device)
    for kind in KINDS:
        where = [i for i, k in enumerate(kinds) if k == kind]
        if not where:
            continue
        if kind == "render":
            images = render_views(shape, len(where), size, generator, device, config.view)
        elif kind == "sketch":
            images = render_sketches(shape, len(where), size, generator, device, config.sketch, config.view)
            images = images[..., None].expand(-1, -1, -1, 3)
        else:
            images = torch.stack([render_photo(shape, size, generator, device, config.photo).image for _ in where])
        out[where] = images.to(out.device)
    return out


def _mentions(rng: np.random.Generator, category: str, probability: float) -> list[str]:
    names = list(ALL) + list(FAMILIES[category].attributes)
    draws = rng.random(len(names))
    return [n for n, d in zip(names, draws) if d < probability]


@torch.no_grad()
def sample_batch(generator: torch.Generator, batch: int, size: int = 64, kinds: tuple[str, ...] | None = None,
                 device: torch.device | str = "cpu", config: SamplerConfig | None = None) -> WorldBatch:
    """Fresh shapes rendered on the fly: ceil(batch / views_per_shape) shapes, `batch` images.

    kinds: image kinds to mix (default config.kinds, i.e. render and sketch). Everything (shape
    seeds, categories, kinds, viewpoints, captions) comes from `generator`, so a generator seeded
    the same way gives the same batch.
    """
    config = config or SamplerConfig()
    kinds = _check_kinds(config.kinds if kinds is None else kinds)
    cats = _categories(config)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    per_shape = max(1, int(config.views_per_shape))
    images, all_kinds, captions, seeds, labels = [], [], [], [], []
    while len(all_kinds) < batch:
        n = min(per_shape, batch - len(all_kinds))
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        category = cats[int(torch.randint(0, len(cats), (1,), generator=generator))]
        picks = [kinds[int(i)] for i in torch.randint(0, len(kinds), (n,), generator=generator)]
        shape = make_shape(seed, category)
        images.append(shape_images(shape, picks, size, generator, device, config))
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        for kind in picks:
            mention = _mentions(rng, category, config.mention_probability)
            captions.append(make_caption(category, shape.colour, shape.pattern, shape.attributes, rng, mention))
            all_kinds.append(kind)
            seeds.append(seed)
            labels.append(shape)
    index = lambda names, values: torch.tensor([names.index(v) for v in values], dtype=torch.int64)  # noqa: E731
    return WorldBatch(
        images=torch.cat(images),
        kinds=all_kinds,
        captions=captions,
        category=index(CATEGORIES, [s.category for s in labels]),
        colour=index(COLOUR_NAMES, [s.colour for s in labels]),
        pattern=index(PATTERNS, [s.pattern for s in labels]),
        seeds=seeds,
        attributes=[dict(s.attributes) for s in labels],
    )


@dataclass
class WorldTensors:
    """A fixed rendered set: `shapes` shapes x `views` images of each kind, as uint8 tensors."""

    images: dict[str, torch.Tensor]
    """kind -> [N, V, H, W, 3] uint8 (sketches are grey, stored as RGB for a uniform pipeline)."""
    category: torch.Tensor
    """[N] int64 index into CATEGORIES."""
    colour: torch.Tensor
    """[N] int64 index into COLOUR_NAMES."""
    pattern: torch.Tensor
    """[N] int64 index into PATTERNS."""
    captions: list[str]
    """Full caption of each shape (make new ones from the labels with `make_caption` for variety)."""
    attributes: list[dict]
    """Family attributes of each shape."""
    seeds: list[int]
    """Shape seeds (`make_shape(seed, CATEGORIES[category])` rebuilds a shape)."""
    split: list[str]
    """"train" or "test" per shape, stratified by category."""

    def save(self, path: str | Path) -> None:
        """Writes everything to one torch file (loadable with weights_only=True)."""
        torch.save({"images": self.images, "category": self.category, "colour": self.colour,
                    "pattern": self.pattern, "captions": self.captions, "attributes": self.attributes,
                    "seeds": self.seeds, "split": self.split,
                    "names": {"categories": list(CATEGORIES), "colours": list(COLOUR_NAMES),
                              "patterns": list(PATTERNS)}}, str(path))

    @classmethod
    def load(cls, path: str | Path) -> "WorldTensors":
        """Reads a file written by `save`; refuses one whose label names differ from this code's."""
        data = torch.load(str(path), weights_only=True)
        names = {"categories": list(CATEGORIES), "colours": list(COLOUR_NAMES), "patterns": list(PATTERNS)}
        if data.get("names") != names:
            raise ValueError(f"{path} was built with other label names {data.get('names')}; rebuild it")
        data.pop("names")
        return cls(**data)


@torch.no_grad()
def build_tensor_dataset(shapes: int, views: int = 2, size: int = 64, seed: int = 0,
                         device: torch.device | str = "cpu", config: SamplerConfig | None = None,
                         test_fraction: float = 0.2, progress: ProgressFn = no_progress,
                         cancel: CancelToken | None = None) -> WorldTensors:
    """Renders `shapes` shapes (categories round-robin) with `views` images of every kind in config.kinds.

    Deterministic per seed. Calls progress(done, shapes) after each shape and checks `cancel`.
    """
    config = config or SamplerConfig()
    kinds = _check_kinds(config.kinds)
    cats = _categories(config)
    if shapes < 1 or views < 1:
        raise ValueError(f"shapes and views must be >= 1, got {shapes} and {views}")
    plan = dataset_seeds(shapes, seed, cats)
    images = {k: torch.empty(shapes, views, size, size, 3, dtype=torch.uint8) for k in kinds}
    built = []
    for i, (shape_seed, category) in enumerate(plan):
        if cancel is not None:
            cancel.check()
        shape = make_shape(shape_seed, category)
        generator = torch.Generator().manual_seed(shape_seed)
        rendered = shape_images(shape, [k for k in kinds for _ in range(views)], size, generator, device, config)
        rendered = (rendered.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().view(len(kinds), views, size, size, 3)
        for j, kind in enumerate(kinds):
            images[kind][i] = rendered[j]
        built.append(shape)
        progress(i + 1, shapes)
    return WorldTensors(
        images=images,
        category=torch.tensor([CATEGORIES.index(s.category) for s in built]),
        colour=torch.tensor([COLOUR_NAMES.index(s.colour) for s in built]),
        pattern=torch.tensor([PATTERNS.index(s.pattern) for s in built]),
        captions=[s.caption for s in built],
        attributes=[dict(s.attributes) for s in built],
        seeds=[s.seed for s in built],
        split=split_shapes([s.category for s in built], seed, test_fraction),
    )
