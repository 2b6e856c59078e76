"""A retrieval protocol where a sketch and a text must add up (issue 20): each says what the other cannot.

The world's full captions name a shape completely (category, colour, pattern and every attribute), so text alone
finds it and a sketch has nothing left to add. Here the text names only what a sketch cannot show, the colour
and the pattern ("a red striped chair"), and the sketch shows only what the text leaves out, which instance
(its proportions and parts); the gallery holds distractors that match either alone:

- targets: `targets_per_category` new world shapes per category (seeds of their own, unseen in any training);
- sketch twins: per target, `sketch_twins` shapes of the same geometry (the same seed) in other colours and
  patterns: they match its sketch exactly and its text not at all;
- text twins: per target, `text_twins` other shapes of its category in its colour and pattern: they match its
  text and not its sketch.

Queries per target: each of its S sketches (drawn as the world draws them, from viewpoints of their own, framed
as a search frames a user's sketch), its colour-and-pattern text, and each sketch with the text. Scored as a
search scores them (`QueryEncoder.target_kind`): the sketch against each gallery shape's index line drawings
(the mean embedding of the K clean drawings from the index's cameras), the text and the sketch + text (feature
addition) against its shaded views (the mean embedding of V random views, as `evaluate`'s gallery). A sketch
twin's drawings are its target's exactly, so scores can tie: Recall@K counts a tie as a uniformly random order
of the tied shapes (the expected hit rate), so that a perfect sketch encoder scores 1 / (1 + sketch twins) at
R@1, and a perfect text encoder about 1 / (1 + text twins).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from backend.progress import CancelToken
from backend.retrieve.evaluate import KS, QueryModel, _embed
from backend.retrieve.sketch_domain import frame_sketches
from backend.retrieve.taskformer import combine
from backend.retrieve.views import IndexViewConfig, render_index_views
from backend.world.appearance import COLOURS, PATTERNS
from backend.world.captions import make_caption
from backend.world.families import FAMILIES
from backend.world.shape import make_shape
from backend.world.views import render_sketches, render_views

COMPOSITION_MODES = ("sketch", "text", "sketch+text")
"""Query modes of the protocol, in report order."""


@dataclass(frozen=True)
class CompositionConfig:
    """The protocol's gallery and queries (fixed with the protocol, before the first measurement)."""

    targets_per_category: int = 5
    """Target shapes per world category."""
    sketch_twins: int = 2
    """Same geometry, another colour and pattern, per target."""
    text_twins: int = 2
    """Same category, colour and pattern, another geometry, per target."""
    views: int = 4
    """Random shaded views per gallery shape (the text's and the fused query's gallery)."""
    sketches: int = 4
    """Sketch queries per target."""
    size: int = 64
    """Image side in pixels (the domain CLIP's)."""
    seed: int = 20
    """Seed of the shapes, views and sketches (the benchmark dataset's are 7, the domain CLIP's others)."""


@dataclass
class CompositionSet:
    """The protocol's images and texts."""

    views: torch.Tensor
    """[G, V, S, S, 3] uint8 shaded views of every gallery shape."""
    lines: torch.Tensor
    """[G, K, S, S, 3] uint8 the index's line drawings of every gallery shape."""
    sketches: torch.Tensor
    """[T, S', S, S, 3] uint8 framed sketch queries of every target."""
    texts: list[str]
    """The colour-and-pattern text of every target."""
    targets: torch.Tensor
    """[T] int64 the gallery index of each target."""
    roles: list[str]
    """Per gallery shape: "target", "sketch twin" or "text twin"."""


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] % (2**31 - 1))


def build_composition(config: CompositionConfig | None = None) -> CompositionSet:
    """Makes the gallery and the queries of the protocol (about 0.15 s a gallery shape on a CPU)."""
    config = config or CompositionConfig()
    index_config = IndexViewConfig().resolved(config.size)
    colours = list(COLOURS)
    views, lines, sketches, texts, targets, roles = [], [], [], [], [], []

    def add(shape, role: str, key: int) -> None:
        generator = torch.Generator().manual_seed(_seed(config.seed, 1, key))
        image = render_views(shape, config.views, config.size, generator)
        views.append((image.clamp(0, 1) * 255).round().to(torch.uint8))
        drawing = render_index_views(shape.mesh, index_config).lines
        lines.append((drawing.clamp(0, 1) * 255).round().to(torch.uint8)[..., None].expand(-1, -1, -1, 3))
        roles.append(role)

    key = 0
    for c, category in enumerate(FAMILIES):
        for t in range(config.targets_per_category):
            rng = np.random.default_rng(_seed(config.seed, 2, c, t))
            seed = _seed(config.seed, 3, c, t)
            target = make_shape(seed, category)
            targets.append(len(roles))
            add(target, "target", key := key + 1)
            generator = torch.Generator().manual_seed(_seed(config.seed, 4, c, t))
            drawn = render_sketches(target, config.sketches, config.size, generator)
            sketches.append((drawn.clamp(0, 1) * 255).round().to(torch.uint8)[..., None].expand(-1, -1, -1, 3))
            texts.append(make_caption(category, target.colour, target.pattern, target.attributes, rng,
                                      mention=("colour", "pattern")))
            others = [(k, p) for k in colours for p in PATTERNS if k != target.colour]
            for i in rng.choice(len(others), config.sketch_twins, replace=False):
                colour, pattern = others[int(i)]
                add(make_shape(seed, category, colour=colour, pattern=pattern), "sketch twin", key := key + 1)
            for j in range(config.text_twins):
                twin = make_shape(_seed(config.seed, 5, c, t, j), category, colour=target.colour,
                                  pattern=target.pattern)
                add(twin, "text twin", key := key + 1)
    return CompositionSet(views=torch.stack(views), lines=torch.stack(lines),
                          sketches=frame_sketches(torch.stack(sketches).contiguous()), texts=texts,
                          targets=torch.tensor(targets, dtype=torch.int64), roles=roles)


def tie_recall(scores: torch.Tensor, truth: torch.Tensor, ks: Sequence[int] = KS) -> dict[str, float]:
    """Recall@K with ties broken uniformly at random, in expectation: a query whose shape has h gallery shapes
    above it and t others level with it is a hit at K with probability clamp((K - h) / (t + 1), 0, 1)."""
    own = scores.gather(1, truth[:, None])
    tolerance = 1e-6
    higher = (scores > own + tolerance).sum(dim=1).float()
    level = ((scores - own).abs() <= tolerance).sum(dim=1).float() - 1
    return {f"r{k}": float(((k - higher) / (level + 1)).clamp(0, 1).mean()) for k in ks}


@torch.no_grad()
def evaluate_composition(model: QueryModel, data: CompositionSet, ks: Sequence[int] = KS, batch: int = 128,
                         cancel: CancelToken | None = None) -> dict[str, dict[str, float]]:
    """mode -> {"r1", "r5", "r10"} on the protocol (module docstring), plus "chance"."""
    if hasattr(model, "eval"):
        model.eval()
    device = model.device
    count, per_view, per_line = len(data.roles), data.views.shape[1], data.lines.shape[1]
    shaded = F.normalize(_embed(model.encode_image, data.views.flatten(0, 1), batch, device, cancel)
                         .view(count, per_view, -1).mean(dim=1), dim=-1)
    drawn = F.normalize(_embed(model.encode_sketch, data.lines.flatten(0, 1), batch, device, cancel)
                        .view(count, per_line, -1).mean(dim=1), dim=-1)
    per_target = data.sketches.shape[1]
    sketch = _embed(model.encode_sketch, data.sketches.flatten(0, 1), batch, device, cancel)
    tokens = model.tokenize(data.texts)
    text = torch.cat([model.encode_text(tokens[i:i + batch]).float().cpu() for i in range(0, len(data.texts), batch)])
    truth = data.targets.repeat_interleave(per_target)
    out = {
        "sketch": tie_recall(sketch @ drawn.T, truth, ks),
        "text": tie_recall(text @ shaded.T, data.targets, ks),
        "sketch+text": tie_recall(combine(sketch, text.repeat_interleave(per_target, dim=0)) @ shaded.T, truth, ks),
    }
    out["chance"] = {f"r{k}": min(1.0, k / count) for k in ks}
    return out
