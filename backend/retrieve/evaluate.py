"""Recall@K of sketch / text / sketch + text / photo queries against a gallery of shapes (the seed's Table 1).

The protocol, fixed before the first measurement:

- Data: a world dataset (`atelier world DIR`); only its "test" split (shapes never trained on; the split is by
  shape and stratified by category) is used, unless another split is asked for.
- Gallery: every shape of the split, once. A shape's gallery embedding is the mean of its shaded views'
  image embeddings (each a unit vector), normalised again: the shape, not one viewpoint, is what is retrieved,
  and the mean keeps every view's evidence where the max of per-view scores would reward one lucky view.
- Queries, for every shape of the split (each shape has the same number of each kind, so shapes weigh
  equally):
    sketch        each of its S sketches alone, through the sketch encoder; scored, when the gallery's line
                  drawings are given (`index_lines`), against each shape's mean embedding of the index's K clean
                  line drawings through the sketch encoder, as a search scores a sketch against a database's
                  "lines" vectors (issue 20; the row "sketch/views" keeps the earlier scoring against the shaded
                  views' gallery beside it), else against the shaded views' gallery;
    text          its caption from the manifest (one query);
    sketch+text   each of its S sketches with its caption, fused by feature addition;
    photo         each of its P photos (shape over clutter), through the image encoder (a TASK-former's photo
                  encoder when it has one; mode left out when the dataset has no photos).
  Sketches and photos come from viewpoints of their own, not those of the gallery's views. Sketches are framed
  as a search frames a user's sketch (`sketch_domain.frame_sketches`: the ink's box centred at 0.8 of the side)
  unless `frame=False` (issue 20; before it they were taken as drawn, which moved zero-shot sketch R@1 by 0.003).
- Score: cosine similarity of the query to every gallery shape. The query's rank is the number of gallery
  shapes scored strictly higher than its own shape; Recall@K = the share of queries with rank < K (a hit when
  the query's shape is among the K best). K in {1, 5, 10}.
- Chance: K / gallery size (the expected Recall@K of a random ranking), min 1.
- Zero-shot baseline: the CLIP the model was fine-tuned from, used as is (`ZeroShot`): sketches and photos
  through its image tower, captions through its text tower, sketch + text by feature addition
  normalise(normalise(s) + normalise(t)), no training. An untrained TaskFormer gives the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
import torch.nn.functional as F

from backend.models.clip import ClipModel
from backend.progress import CancelToken, ProgressFn, no_progress
from backend.retrieve.data import RetrievalSplit, to_float
from backend.retrieve.sketch_domain import frame_sketches
from backend.retrieve.taskformer import combine

MODES = ("sketch", "text", "sketch+text", "photo")
"""Query modes, in report order."""
SKETCH_VS_VIEWS = "sketch/views"
"""The extra row, with the gallery's line drawings given: sketches scored against the shaded views' gallery."""
KS = (1, 5, 10)
"""The K of Recall@K."""


class QueryModel(Protocol):
    """What evaluation needs of a model: TaskFormer and ZeroShot both provide it."""

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor: ...
    def encode_image(self, images: torch.Tensor) -> torch.Tensor: ...
    def encode_sketch(self, sketches: torch.Tensor) -> torch.Tensor: ...
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor: ...


class ZeroShot:
    """A CLIP used zero-shot the TASK-former way: sketches through the image tower, feature addition."""

    def __init__(self, clip: ClipModel) -> None:
        self.clip = clip
        self.clip_spec = clip.spec

    @property
    def device(self) -> torch.device:
        return self.clip.device

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.clip.tokenizer(list(texts)).to(self.device)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(images, normalize=True)

    def encode_sketch(self, sketches: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(sketches, normalize=True)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.clip.model.encode_text(tokens.to(self.device), normalize=True)

    def encode_query(self, sketch: torch.Tensor | None = None, tokens: torch.Tensor | None = None) -> torch.Tensor:
        if tokens is None:
            return self.encode_sketch(sketch)
        if sketch is None:
            return self.encode_text(tokens)
        return combine(self.encode_sketch(sketch), self.encode_text(tokens))


@dataclass
class RetrievalEval:
    """What `evaluate` measured."""

    recall: dict[str, dict[str, float]]
    """mode -> {"r1", "r5", "r10"} in [0, 1]."""
    chance: dict[str, float]
    """{"r1", "r5", "r10"}: K / gallery size."""
    gallery: int
    """Gallery shapes."""
    queries: dict[str, int]
    """mode -> number of queries."""
    mean_rank: dict[str, float]
    """mode -> mean rank of the right shape (0 = first)."""

    def to_dict(self) -> dict:
        return {"recall": self.recall, "chance": self.chance, "gallery": self.gallery, "queries": self.queries,
                "mean_rank": self.mean_rank}


def _embed(fn, images: torch.Tensor, batch: int, device: torch.device, cancel: CancelToken | None) -> torch.Tensor:
    """images: [N, H, W, 3] uint8 -> [N, D] float32 embeddings on the CPU, in batches."""
    out = []
    for i in range(0, len(images), batch):
        if cancel is not None:
            cancel.check()
        out.append(fn(to_float(images[i:i + batch]).to(device)).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def ranks(queries: torch.Tensor, gallery: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """[Q] int64: how many gallery rows score strictly higher than row truth[q] for query q.

    queries: [Q, D], gallery: [G, D] unit rows; truth: [Q] int64 gallery index of each query's shape.
    """
    scores = queries @ gallery.T
    own = scores.gather(1, truth[:, None])
    return (scores > own).sum(dim=1)


def recall_at(rank: torch.Tensor, ks: Sequence[int] = KS) -> dict[str, float]:
    """{"r1": share of rank < 1, "r5": ..., ...}."""
    return {f"r{k}": float((rank < k).float().mean()) for k in ks}


@torch.no_grad()
def evaluate(model: QueryModel, data: RetrievalSplit, ks: Sequence[int] = KS, batch: int = 128,
             progress: ProgressFn = no_progress, cancel: CancelToken | None = None,
             index_lines: torch.Tensor | None = None, frame: bool = True) -> RetrievalEval:
    """Recall@K per query mode on `data` (a split from `load_split`), by the protocol in the module docstring.
    index_lines: [N, K, H, W, 3] uint8, the index's line drawings of the split's shapes
    (`sketch_domain.cached_index_lines`); frame: frame the sketches as a search does."""
    if len(data) < 2:
        raise ValueError(f"retrieval needs a gallery of at least 2 shapes, the split has {len(data)}")
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    device = model.device
    n, views, sketches, photos = len(data), data.views.shape[1], data.sketches.shape[1], data.photos.shape[1]
    modes = [m for m in MODES if m != "photo" or photos > 0]
    steps = 4 + (1 if photos else 0)
    progress(0, steps)
    view_emb = _embed(model.encode_image, data.views.flatten(0, 1), batch, device, cancel)
    gallery = F.normalize(view_emb.view(n, views, -1).mean(dim=1), dim=-1)
    progress(1, steps)
    drawn = frame_sketches(data.sketches) if frame else data.sketches
    sketch_emb = _embed(model.encode_sketch, drawn.flatten(0, 1), batch, device, cancel)  # [n * S, D]
    progress(2, steps)
    tokens = model.tokenize(data.captions)
    text_emb = torch.cat([model.encode_text(tokens[i:i + batch]).float().cpu() for i in range(0, n, batch)])
    progress(3, steps)
    shapes = torch.arange(n)
    queries = {
        "sketch": (sketch_emb, shapes.repeat_interleave(sketches)),
        "text": (text_emb, shapes),
        "sketch+text": (combine(sketch_emb, text_emb.repeat_interleave(sketches, dim=0)),
                        shapes.repeat_interleave(sketches)),
    }
    if index_lines is not None:
        if index_lines.ndim != 5 or index_lines.shape[0] != n:
            raise ValueError(f"index_lines must be [{n}, K, H, W, 3] for the split's shapes, got {tuple(index_lines.shape)}")
        line_emb = _embed(model.encode_sketch, index_lines.flatten(0, 1), batch, device, cancel)
        lines_gallery = F.normalize(line_emb.view(n, index_lines.shape[1], -1).mean(dim=1), dim=-1)
        queries[SKETCH_VS_VIEWS] = queries["sketch"]
        queries["sketch"] = (*queries["sketch"], lines_gallery)
        modes.insert(1, SKETCH_VS_VIEWS)
    if photos:
        encode_photo = getattr(model, "encode_photo", model.encode_image)  # a TASK-former's photo tower, if any
        photo_emb = _embed(encode_photo, data.photos.flatten(0, 1), batch, device, cancel)
        queries["photo"] = (photo_emb, shapes.repeat_interleave(photos))
        progress(4, steps)
    recall, counts, mean_rank = {}, {}, {}
    for mode in modes:
        emb, truth, *target = queries[mode]
        rank = ranks(emb, target[0] if target else gallery, truth)
        recall[mode] = recall_at(rank, ks)
        counts[mode] = int(len(truth))
        mean_rank[mode] = float(rank.float().mean())
    progress(steps, steps)
    if was_training:
        model.train()
    return RetrievalEval(recall=recall, chance={f"r{k}": min(1.0, k / n) for k in ks}, gallery=n,
                         queries=counts, mean_rank=mean_rank)


def format_table(results: dict[str, RetrievalEval | dict], ks: Sequence[int] = KS) -> str:
    """A text table: one row per (model, mode), a column per Recall@K; the chance row first."""
    items = {name: (r.to_dict() if isinstance(r, RetrievalEval) else r) for name, r in results.items()}
    header = f"{'model':<14} {'mode':<12}" + "".join(f" {'R@' + str(k):>7}" for k in ks)
    lines = [header, "-" * len(header)]
    first = next(iter(items.values()), None)
    if first is not None:
        lines.append(f"{'chance':<14} {'any':<12}" + "".join(f" {first['chance'][f'r{k}']:>7.3f}" for k in ks))
    for name, result in items.items():
        for mode, values in result["recall"].items():
            lines.append(f"{name:<14} {mode:<12}" + "".join(f" {values[f'r{k}']:>7.3f}" for k in ks))
    return "\n".join(lines)
