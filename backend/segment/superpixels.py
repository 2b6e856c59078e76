"""The offline proposer: SLIC superpixels grouped into candidate regions, standing in for SAM without weights.

SLIC (scikit-image) cuts the image into compact superpixels that follow colour edges. Adjacent regions are
then merged greedily, the closest mean colour (CIELAB) first, and the grouping is kept at a few colour
distances (`levels`): a fine level follows parts, a coarse one whole objects of one colour. Every superpixel
and every group at every level is a candidate mask, so the constrained-IoU merge (`merge.py`) can snap the
relevance region to image edges at the scale that fits. Much rougher than SAM (no notion of objects, only of
colour), and labelled so in every report: `METHOD_FALLBACK`.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from backend.errors import InvalidInputError
from backend.progress import CancelToken, ProgressFn, no_progress
from backend.segment.sam import Proposals

METHOD_FALLBACK = "superpixels (no SAM weights)"
"""The proposer's label when it stands in for missing SAM weights."""
METHOD_CHOSEN = "superpixels"
"""Its label when it was asked for (`SegmentConfig.proposer = "superpixels"`)."""


@dataclass
class SuperpixelConfig:
    """SLIC superpixels and their colour grouping."""

    max_side: int = 512
    """The image is resized so its longer side is at most this before SLIC (masks come back at this size)."""
    n_segments: int = 300
    """Superpixels SLIC aims for."""
    compactness: float = 10.0
    """SLIC's trade-off between colour and space: higher gives squarer superpixels that follow edges less."""
    sigma: float = 1.0
    """Gaussian smoothing (pixels) before SLIC, against noise and JPEG blocks."""
    levels: tuple[float, ...] = (10.0, 20.0, 35.0)
    """CIELAB distances (ΔE) at which the grouping is kept, ascending: adjacent groups whose mean colours are
    closer than a level have been merged at that level."""
    prompt_level: int = 1
    """Which level's groups a point prompt selects (index into `levels`)."""

    def check(self) -> None:
        if not 32 <= self.max_side <= 4096:
            raise InvalidInputError(f"superpixel max_side must be in [32, 4096], got {self.max_side}")
        if not 2 <= self.n_segments <= 10_000:
            raise InvalidInputError(f"n_segments must be in [2, 10000], got {self.n_segments}")
        if not self.levels or list(self.levels) != sorted(self.levels) or min(self.levels) <= 0:
            raise InvalidInputError(f"levels must be ascending positive colour distances, got {self.levels}")
        if not 0 <= self.prompt_level < len(self.levels):
            raise InvalidInputError(f"prompt_level must index levels (0-{len(self.levels) - 1}), "
                                    f"got {self.prompt_level}")


def _adjacent_pairs(labels: np.ndarray) -> np.ndarray:
    """[E, 2] int64 unique (a < b) pairs of labels that touch horizontally or vertically."""
    pairs = [np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
             np.stack([labels[:-1, :].ravel(), labels[1:, :].ravel()], 1)]
    pairs = np.concatenate(pairs)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(np.sort(pairs, axis=1), axis=0)


def group_superpixels(labels: np.ndarray, lab: np.ndarray, levels: tuple[float, ...],
                      cancel: CancelToken | None = None) -> list[np.ndarray]:
    """Greedy region merging of superpixels by mean colour, kept at each colour distance in `levels`.

    labels: [h, w] int superpixel ids 0..S-1; lab: [h, w, 3] float CIELAB. Returns one [S] int array per level:
    the group id of each superpixel at that level.
    """
    count = int(labels.max()) + 1
    flat = labels.ravel()
    area = np.bincount(flat, minlength=count).astype(np.float64)
    sums = np.stack([np.bincount(flat, weights=lab[..., c].ravel(), minlength=count) for c in range(3)], 1)
    parent = list(range(count))
    size = area.copy()
    total = sums.copy()
    neighbours: list[set[int]] = [set() for _ in range(count)]
    for a, b in _adjacent_pairs(labels):
        neighbours[a].add(int(b))
        neighbours[b].add(int(a))

    def mean(i: int) -> np.ndarray:
        return total[i] / max(size[i], 1.0)

    def distance(i: int, j: int) -> float:
        return float(np.linalg.norm(mean(i) - mean(j)))

    version = [0] * count
    heap = [(distance(a, b), a, b, 0, 0) for a in range(count) for b in neighbours[a] if a < b]
    heapq.heapify(heap)
    out: list[np.ndarray] = []
    for level in levels:
        while heap and heap[0][0] < level:
            if cancel is not None:
                cancel.check()
            _, a, b, va, vb = heapq.heappop(heap)
            if parent[a] != a or parent[b] != b or version[a] != va or version[b] != vb:
                continue  # stale: one side has merged since this pair was queued
            # b joins a: a's colour becomes the area-weighted mean, its neighbours the union.
            parent[b] = a
            size[a] += size[b]
            total[a] += total[b]
            version[a] += 1
            neighbours[a] |= neighbours[b]
            neighbours[a] -= {a, b}
            for n in neighbours[b]:
                if n != a:
                    neighbours[n].discard(b)
                    neighbours[n].add(a)
            neighbours[b] = set()
            for n in neighbours[a]:
                heapq.heappush(heap, (distance(a, n), a, n, version[a], version[n]))
        out.append(np.asarray([_root(parent, i) for i in range(count)], np.int64))
    return out


def _root(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def propose_superpixels(image: np.ndarray, config: SuperpixelConfig | None = None, fallback: bool = True,
                        progress: ProgressFn = no_progress, cancel: CancelToken | None = None) -> Proposals:
    """Candidate masks from SLIC superpixels and their colour groups.

    image: [h, w, 3] float32 RGB in [0, 1] (already at the working size: callers resize to `config.max_side`).
    Returns Proposals at the image's size: every superpixel, then every distinct group of each level, with
    scores 1 and `labels` the group map of `config.prompt_level` (for point prompts). `fallback` picks the
    label: METHOD_FALLBACK (standing in for missing SAM weights) or METHOD_CHOSEN.
    """
    from skimage.color import rgb2lab
    from skimage.segmentation import slic

    config = config or SuperpixelConfig()
    config.check()
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [h, w, 3], got {image.shape}")
    steps = len(config.levels) + 1
    superpixels = slic(image.astype(np.float64), n_segments=config.n_segments, compactness=config.compactness,
                       sigma=config.sigma, start_label=0, channel_axis=-1)
    # SLIC may skip ids; make them 0..S-1.
    _, superpixels = np.unique(superpixels, return_inverse=True)
    superpixels = superpixels.reshape(image.shape[:2]).astype(np.int32)
    progress(1, steps)
    lab = rgb2lab(np.clip(image, 0.0, 1.0))
    groupings = group_superpixels(superpixels, lab, config.levels, cancel)
    progress(steps, steps)
    count = int(superpixels.max()) + 1
    members: list[np.ndarray] = [np.eye(count, dtype=bool)]  # level 0: each superpixel alone
    seen: set[bytes] = {m.tobytes() for m in members[0]}
    for groups in groupings:
        ids = np.unique(groups)
        table = groups[None, :] == ids[:, None]  # [G, S]: which superpixels each group holds
        fresh = [row for row in table if row.tobytes() not in seen]
        seen.update(row.tobytes() for row in fresh)
        if fresh:
            members.append(np.stack(fresh))
    table = np.concatenate(members)  # [N, S]
    masks = table[:, superpixels]  # [N, h, w]
    prompt_groups = groupings[config.prompt_level]
    return Proposals(masks=masks, scores=np.ones(len(masks), np.float32),
                     method=METHOD_FALLBACK if fallback else METHOD_CHOSEN,
                     labels=prompt_groups[superpixels].astype(np.int32))



__all__ = ["METHOD_CHOSEN", "METHOD_FALLBACK", "SuperpixelConfig", "group_superpixels", "propose_superpixels"]
