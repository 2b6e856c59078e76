"""The domain CLIP's world: its training recipe (`DomainClipConfig`), which world shapes it trains on and which
are held out, its zero-shot prompts, and held-out renders scored by zero-shot accuracy.

Training code, tests and benchmarks only (it imports the world); `domain_train.py` trains on this plan.
Held-out shapes: the training world is `dataset_seeds(shapes, data_seed)` split by `split_shapes`; only the
"train" shapes are ever rendered for training. `heldout_plan()` names the "test" shapes. World datasets with
another seed (e.g. `atelier world --seed 0`) hold no training shapes at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from backend.models.clip import ClipModel, TinyClipConfig
from backend.models.domain import DOMAIN_MODEL
from backend.models.training import torch_threads
from backend.world.appearance import PATTERN_ADJECTIVES, PATTERNS
from backend.world.dataset import dataset_seeds, split_shapes
from backend.world.families import CATEGORIES
from backend.world.sampling import COLOUR_NAMES, shape_images
from backend.world.shape import WorldShape, make_shape


PROMPTS: dict[str, str] = {
    "category": "a photo of a {}",
    "colour": "a {} object",
    "pattern": "a {} object",
}
"""Zero-shot prompt per label kind; the pattern slot takes the caption adjective ("striped", "plain")."""


def label_words(task: str) -> tuple[str, ...]:
    """The words filling `PROMPTS[task]`, in label-index order (CATEGORIES, COLOUR_NAMES, PATTERNS)."""
    if task == "category":
        return tuple(CATEGORIES)
    if task == "colour":
        return tuple(COLOUR_NAMES)
    if task == "pattern":
        return tuple(PATTERN_ADJECTIVES[p] for p in PATTERNS)
    raise ValueError(f"task must be one of {', '.join(PROMPTS)}, got {task!r}")


def label_prompts(task: str) -> list[str]:
    """The zero-shot prompts of `task`, one per class in label-index order."""
    return [PROMPTS[task].format(word) for word in label_words(task)]


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class DomainClipConfig:
    """Everything that decides the domain CLIP's weights: the world it sees and how it is trained."""

    model: TinyClipConfig = DOMAIN_MODEL
    """Architecture and initialisation seed."""
    shapes: int = 3000
    """World shapes in the plan (`dataset_seeds(shapes, data_seed)`); the held-out `test_fraction` is never
    rendered for training."""
    data_seed: int = 1009
    """World seed of the training plan; not 0, so `atelier world` datasets with default seeds are unseen shapes."""
    test_fraction: float = 0.2
    """Shapes held out per category (`split_shapes`) for the benchmark and tests."""
    renders: int = 4
    """Shaded renders per training shape, from random viewpoints."""
    sketches: int = 1
    """Line-drawing sketches per training shape."""
    steps: int = 600
    """Optimiser steps (fixed, not timed, so the result does not depend on the machine's speed)."""
    batch: int = 256
    """Images per step (and their captions)."""
    lr: float = 2e-3
    """Peak AdamW learning rate."""
    min_lr_fraction: float = 0.02
    """The cosine schedule ends at this fraction of `lr`."""
    warmup: int = 50
    """Linear warm-up steps."""
    weight_decay: float = 0.05
    """AdamW weight decay on weight matrices and convolutions (not on gains, biases, embeddings, temperature)."""
    init_temperature: float = 0.07
    """Initial softmax temperature (learnable, as in CLIP)."""
    max_logit_scale: float = 100.0
    """Upper clamp of 1 / temperature."""
    prompt_fraction: float = 0.3
    """Share of captions that are a zero-shot prompt (`PROMPTS`, one label) rather than a world caption."""
    mention_probability: float = 0.6
    """In world captions, each label besides the category is mentioned with this probability."""
    crop_scale: tuple[float, float] = (0.75, 1.1)
    """Augmentation: side of the sampled square relative to the image (above 1 zooms out over white)."""
    flip: bool = True
    """Augmentation: mirror half of the images left-right (no caption names a side)."""
    seed: int = 0
    """Seed of batch order, captions and augmentation."""
    threads: int = 1
    """Torch CPU threads while training. One: on a 2-core machine that anything else is using, two OpenMP
    threads ran 7x slower per step than one (measured); the result is reproducible for a fixed count."""
    workers: int = 2
    """Processes rendering the training set (each single-threaded; the pixels do not depend on it)."""

    def __post_init__(self) -> None:
        for name, low in (("shapes", 2), ("renders", 1), ("sketches", 0), ("steps", 1), ("batch", 2), ("warmup", 0),
                          ("threads", 1), ("workers", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ValueError(f"DomainClipConfig.{name} must be an integer >= {low}, got {value!r}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"DomainClipConfig.test_fraction must be in (0, 1), got {self.test_fraction}")
        if not 0.0 < self.crop_scale[0] <= self.crop_scale[1]:
            raise ValueError(f"DomainClipConfig.crop_scale must be (low, high) with 0 < low <= high, "
                             f"got {self.crop_scale}")

    def data_key(self) -> dict:
        """What the rendered training set depends on (the cache key, with the world and renderer sources)."""
        return {"shapes": self.shapes, "data_seed": self.data_seed, "test_fraction": self.test_fraction,
                "renders": self.renders, "sketches": self.sketches, "size": self.model.image_size}


# ---------------------------------------------------------------------------------------------- held-out shapes


def training_plan(config: DomainClipConfig | None = None) -> tuple[list[tuple[int, str]], list[str]]:
    """((shape seed, category) for every shape of the plan, "train"/"test" per shape)."""
    config = config or DomainClipConfig()
    plan = dataset_seeds(config.shapes, config.data_seed)
    return plan, split_shapes([c for _, c in plan], config.data_seed, config.test_fraction)


def heldout_plan(count: int | None = None, config: DomainClipConfig | None = None) -> list[tuple[int, str]]:
    """(shape seed, category) of held-out shapes the domain CLIP never saw, categories taking turns (so a
    prefix of 8k shapes holds k of each); all of them when `count` is None."""
    plan, split = training_plan(config)
    by_category: dict[str, list[tuple[int, str]]] = {}
    for p, s in zip(plan, split):
        if s == "test":
            by_category.setdefault(p[1], []).append(p)
    queues = [by_category[c] for c in CATEGORIES if c in by_category]
    held = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
    if count is not None:
        if count < 1 or count > len(held):
            raise ValueError(f"count must be in [1, {len(held)}], got {count}")
        held = held[:count]
    return held


# ---------------------------------------------------------------------------------------------- zero-shot


@torch.no_grad()
def zero_shot_predict(clip: ClipModel, images: torch.Tensor, task: str, batch: int = 256) -> torch.Tensor:
    """images: [B, 3, H, W] float in [0, 1] -> [B] int64 class indices of `task` (label order of `label_words`)."""
    text = clip.encode_text(label_prompts(task))
    out = [(clip.encode_image(images[i:i + batch]) @ text.T).argmax(1) for i in range(0, len(images), batch)]
    return torch.cat(out).cpu()


@dataclass
class HeldOut:
    """Held-out shapes as the benchmark and tests see them: images per kind, labels and full captions."""

    images: dict[str, torch.Tensor]
    """kind -> [N, 3, S, S] float32 in [0, 1], one image per shape."""
    labels: dict[str, torch.Tensor]
    """"category", "colour", "pattern" -> [N] int64 indices (label order of `label_words`)."""
    captions: list[str]
    """Each shape's full caption (every label mentioned)."""


def render_heldout(plan: Sequence[tuple[int, str]], kinds: Sequence[str] = ("render",), size: int = 64,
                   view_seed: int = 1) -> HeldOut:
    """One image of each of `kinds` ("render", "sketch", "photo") per shape of `plan`, with labels and captions.

    Viewpoints come from a generator seeded by (shape seed, view_seed), unlike any training view.
    """
    images: dict[str, list[torch.Tensor]] = {kind: [] for kind in kinds}
    labels: dict[str, list[int]] = {"category": [], "colour": [], "pattern": []}
    captions = []
    with torch_threads(1):
        for seed, category in plan:
            shape: WorldShape = make_shape(seed, category)
            view = int(np.random.SeedSequence([seed, view_seed]).generate_state(1)[0])
            for kind, image in zip(kinds, shape_images(shape, list(kinds), size, torch.Generator().manual_seed(view))):
                images[kind].append(image)
            labels["category"].append(CATEGORIES.index(shape.category))
            labels["colour"].append(COLOUR_NAMES.index(shape.colour))
            labels["pattern"].append(PATTERNS.index(shape.pattern))
            captions.append(shape.caption)
    return HeldOut(images={k: torch.stack(v).permute(0, 3, 1, 2).contiguous() for k, v in images.items()},
                   labels={k: torch.tensor(v, dtype=torch.int64) for k, v in labels.items()}, captions=captions)


def zero_shot_accuracy(clip: ClipModel, held: HeldOut, task: str, kind: str = "render") -> float:
    """Share of `held`'s `kind` images whose `task` label the prompts of `task` pick."""
    return float((zero_shot_predict(clip, held.images[kind], task) == held.labels[task]).float().mean())


