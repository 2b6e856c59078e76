"""Training photo queries: a split's world photos cut out as `search --image` cuts a photo without a prompt.

TASK-former's photo term (`TrainConfig.photo_weight`) contrasts each train shape's photo, cut out by saliency
(`backend.segment.photo_query.cut_photo`, no prompt: the query-time cut, imperfect masks and all), with the
shape's view embeddings, so the image tower learns what a cut-out photo of a shape looks like: clutter left
in the crop, parts missed, other lighting. The cut takes about 0.1 s a photo on a CPU, so the crops of a split
are computed once and cached (`cached_photo_crops`), keyed by the photos' bytes, the cut's settings and the
cut's source code.

Each crop (a square of its own size on white, or the whole photo when nothing was found) is resized to the
split's image size the way the CLIP's preprocessing resizes (bilinear, antialiased when shrinking), so the
crops stack with the views and go through the same augmentation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from backend.checkpoints import load_cached, save_atomic
from backend.errors import InvalidInputError
from backend.retrieve.data import RetrievalSplit

CACHE_FORMAT = "atelier-photo-crops-1"
"""The `format` entry of a cached crops file."""


def resize_square(image: np.ndarray, side: int) -> np.ndarray:
    """[h, w, 3] float in [0, 1] (square) -> [side, side, 3] uint8, bilinear, antialiased when shrinking (as
    `ClipModel.preprocess` resizes)."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    if x.shape[-2:] != (side, side):
        shrink = side < min(x.shape[-2:])
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=shrink)
    return (x[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def label_prompt(labels: dict) -> str:
    """The object prompt a user would type for a world shape: its colour and category ("a red chair")."""
    return f"a {labels['colour']} {labels['category']}"


def drawn_photos(data: RetrievalSplit, count: int, seed: int = 0) -> torch.Tensor:
    """[N, count, S, S, 3] uint8: `count` new world photos of each shape of `data` (its own viewpoints, clutter
    and distractors, `render_photo` of the shape its manifest seed makes), seeded by (seed, shape seed, k)."""
    from backend.world.dataset import read_manifest  # noqa: PLC0415
    from backend.world.shape import make_shape  # noqa: PLC0415
    from backend.world.views import render_photo  # noqa: PLC0415

    records = {r.get("id"): r for r in read_manifest(data.root)["shapes"]}
    side = data.image_size
    out = np.empty((len(data), count, side, side, 3), dtype=np.uint8)
    for i, ident in enumerate(data.ids):
        record = records.get(ident) or {}
        if not isinstance(record.get("seed"), int):
            raise InvalidInputError(f"{data.root}: shape {ident} records no seed, so no new photos of it can be drawn",
                                    hint="train without extra photos (extra_photos 0), or write the dataset again")
        shape = make_shape(record["seed"], record["category"])
        for k in range(count):
            generator = torch.Generator().manual_seed(
                int(np.random.SeedSequence([seed, record["seed"], k]).generate_state(1)[0]))
            image = render_photo(shape, size=side, generator=generator).image
            out[i, k] = (image.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return torch.from_numpy(out)


def cut_split_photos(data: RetrievalSplit, config=None,
                     progress: Callable[[int, int], None] | None = None, clip=None,
                     photos: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """([N, P, S, S, 3] uint8 crops, how many photos fell back to the whole photo) for every photo of `data` (or
    of `photos`, [N, P, S, S, 3] uint8 photos of its shapes), cut by saliency (`cut_photo` without a prompt,
    `config` a PhotoQueryConfig), or with `clip` by each shape's `label_prompt` as `search --image --prompt`
    cuts; S = the split's image size."""
    from backend.segment.photo_query import cut_photo  # noqa: PLC0415  (segmentation loads only when asked)

    photos = data.photos if photos is None else photos
    n, per_shape = len(data), photos.shape[1]
    if per_shape == 0:
        raise InvalidInputError(f"the {data.split!r} split of {data.root} has no photos to train the photo term on",
                                hint="write the dataset with photos (atelier world DIR --photos 2), or set the "
                                     "photo weight to 0")
    side = data.image_size
    out = np.empty((n, per_shape, side, side, 3), dtype=np.uint8)
    fallbacks = 0
    for i in range(n):
        for k in range(per_shape):
            prompt = label_prompt(data.labels[i]) if clip is not None else None
            cut = cut_photo(photos[i, k].numpy(), clip, prompt=prompt, config=config)
            fallbacks += cut.method == "raw"
            out[i, k] = resize_square(cut.image, side)
        if progress is not None:
            progress(i + 1, n)
    return torch.from_numpy(out), fallbacks


def crops_key(data: RetrievalSplit, config=None, clip=None) -> str:
    """The cache key of `data`'s crops: its photos' bytes, the cut's settings and the cut's source files (with
    `clip`: the prompts and the CLIP's weights too)."""
    from backend.segment import photo_query  # noqa: PLC0415

    config = config or photo_query.PhotoQueryConfig()
    digest = hashlib.sha256(CACHE_FORMAT.encode())
    if clip is not None:
        digest.update(json.dumps([label_prompt(labels) for labels in data.labels]).encode())
        for tensor in clip.model.state_dict().values():
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(json.dumps(asdict(config), sort_keys=True, default=str).encode())
    digest.update(json.dumps(list(data.photos.shape)).encode())
    digest.update(data.photos.numpy().tobytes())
    folder = Path(photo_query.__file__).parent
    for name in ("photo_query.py", "merge.py", "segment.py", "superpixels.py", "sam.py"):
        path = folder / name
        if path.is_file():
            digest.update(name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def cached_photo_crops(data: RetrievalSplit, cache_dir: str | Path | None = None, config=None,
                       progress: Callable[[int, int], None] | None = None, clip=None, extra: int = 0,
                       seed: int = 0) -> torch.Tensor:
    """`cut_split_photos(data, clip=clip)`, read from `cache_dir` (default `$ATELIER_HOME/cache/photo_crops`) when
    computed before, else computed and written there. extra > 0: the crops of `extra` new photos per shape
    instead (`drawn_photos(data, extra, seed)`, drawn once and cached too)."""
    if cache_dir is None:
        from backend.models.store import atelier_home  # noqa: PLC0415

        cache_dir = atelier_home() / "cache" / "photo_crops"
    if data.photos.shape[1] == 0:
        cut_split_photos(data, config)  # raises the InvalidInputError with its hint
    key = crops_key(data, config, clip)
    photos = None
    if extra:
        drawn_path = Path(cache_dir) / f"photos_{crops_key(data)}_{extra}_{seed}.pt"
        photos = load_cached(drawn_path, CACHE_FORMAT, "photos", (len(data), extra))
        if photos is None:
            photos = drawn_photos(data, extra, seed)
            save_atomic({"format": CACHE_FORMAT, "photos": photos}, drawn_path)
        key = f"{key}_extra{extra}_{seed}"
    path = Path(cache_dir) / f"{key}.pt"
    rows = (len(data), extra or data.photos.shape[1])
    crops = load_cached(path, CACHE_FORMAT, "crops", rows)
    if crops is None:
        crops, fallbacks = cut_split_photos(data, config, progress, clip, photos)
        save_atomic({"format": CACHE_FORMAT, "crops": crops, "raw_fallbacks": int(fallbacks)}, path)
    return crops
