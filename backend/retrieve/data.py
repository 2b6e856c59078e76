"""TASK-former data from a world dataset folder (`atelier world DIR`, `backend.world.dataset.write_dataset`).

A split ("train", "test" or "all": the manifest's split is by shape and stratified by category) is read
into memory once as uint8 tensors: every shape's shaded views, sketches and photos, its caption, category
and labels. `TripletDataset` serves (image, sketch, caption tokens, category) training triples from it;
the trainer samples batches of distinct shapes itself (`backend.retrieve.train`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from backend.errors import InvalidInputError
from backend.world.dataset import MANIFEST, read_manifest, split_shapes

SPLITS = ("train", "test", "all")
"""Which shapes of a world dataset to read."""


@dataclass
class RetrievalSplit:
    """One split of a world dataset, in memory."""

    root: Path
    """The dataset folder."""
    split: str
    """"train", "test" or "all"."""
    ids: list[str]
    """Shape id per shape ("chair_0007")."""
    views: torch.Tensor
    """[N, V, H, W, 3] uint8 shaded renders over white (the gallery side)."""
    sketches: torch.Tensor
    """[N, S, H, W, 3] uint8 line drawings (grey, stored as RGB)."""
    photos: torch.Tensor
    """[N, P, H, W, 3] uint8 photos of the shape over clutter (P may be 0)."""
    captions: list[str]
    """The manifest caption per shape (every label mentioned)."""
    categories: torch.Tensor
    """[N] int64 index into `class_names`."""
    labels: list[dict]
    """Per shape: {"category", "colour", "pattern", "attributes"}, to draw paraphrased captions."""
    class_names: tuple[str, ...]
    """The dataset's category names, in label-index order."""
    files: list[str]
    """Library mesh path per shape, relative to `root`."""

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def image_size(self) -> int:
        return int(self.views.shape[2])


def _fail(message: str, hint: str = "write a dataset with `atelier world DIR --shapes N`") -> InvalidInputError:
    return InvalidInputError(message, hint=hint)


def _read_png(path: Path) -> np.ndarray:
    if not path.is_file():
        raise _fail(f"the world dataset lacks {path}", hint="the dataset is incomplete; write it again")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise _fail(f"cannot read {path}: {exc}", hint="the dataset is damaged; write it again") from exc


def _stack(root: Path, records: list[dict], key: str, count: int, size: tuple[int, int]) -> torch.Tensor:
    out = np.empty((len(records), count, size[0], size[1], 3), dtype=np.uint8)
    for i, record in enumerate(records):
        for k, rel in enumerate(record[key][:count]):
            array = _read_png(root / rel)
            if array.shape[:2] != size:
                raise _fail(f"{root / rel} is {array.shape[1]}x{array.shape[0]} px, the dataset's images are "
                            f"{size[1]}x{size[0]}", hint="write the dataset again with one --size")
            out[i, k] = array
    return torch.from_numpy(out)


def load_split(data_dir: str | Path, split: str = "train", need: Sequence[str] = ("views", "sketches"),
               progress: Callable[[int, int], None] | None = None) -> RetrievalSplit:
    """Reads the `split` shapes of the world dataset in `data_dir`.

    need: image kinds every shape must have at least one of ("views", "sketches", "photos"); shapes keep the
    smallest count found across the split for each kind. Raises InvalidInputError when the folder is missing,
    is not a world dataset, the split holds no shapes, or a needed kind is missing.
    """
    if split not in SPLITS:
        raise InvalidInputError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise _fail(f"data folder {root} does not exist")
    if not root.is_dir():
        raise _fail(f"--data must be a world dataset folder, {root} is a file")
    manifest = read_manifest(root)  # InvalidInputError: no manifest, damaged, other format
    shapes = manifest.get("shapes")
    class_names = tuple(manifest.get("categories") or ())
    if not isinstance(shapes, list) or not class_names:
        raise _fail(f"{root / MANIFEST} has no shapes or categories", hint="the manifest is damaged; write it again")
    records = [r for r in shapes if split == "all" or r.get("split") == split]
    if not records:
        raise _fail(f"the {split!r} split of {root} holds no shapes ({len(shapes)} shapes in all)",
                    hint="write a dataset with more shapes (each category needs two or more for a test split)")
    for key in ("views", "sketches", "photos"):
        for record in records:
            if not isinstance(record.get(key, []), list):
                raise _fail(f"{root / MANIFEST}: shape {record.get('id')} has no list of {key}",
                            hint="the manifest is damaged; write it again")
    counts = {key: min(len(r.get(key, [])) for r in records) for key in ("views", "sketches", "photos")}
    for key in need:
        if counts[key] == 0:
            raise _fail(f"shapes of the {split!r} split of {root} have no {key}",
                        hint=f"write the dataset with {key} (atelier world DIR --views N)")
    unknown = sorted({r.get("category") for r in records} - set(class_names))
    if unknown:
        raise _fail(f"{root / MANIFEST} has shapes of categories {unknown} not in its category list",
                    hint="the manifest is damaged; write it again")
    first = next((r[k][0] for k in ("views", "sketches", "photos") for r in records if r.get(k)), None)
    if first is None:
        raise _fail(f"shapes of the {split!r} split of {root} have no images")
    size = _read_png(root / first).shape[:2]
    tensors = {key: _stack(root, records, key, counts[key], size) for key in ("views", "sketches", "photos")}
    if progress is not None:
        progress(len(records), len(records))
    return RetrievalSplit(
        root=root, split=split, ids=[str(r["id"]) for r in records],
        views=tensors["views"], sketches=tensors["sketches"], photos=tensors["photos"],
        captions=[str(r["caption"]) for r in records],
        categories=torch.tensor([class_names.index(r["category"]) for r in records], dtype=torch.int64),
        labels=[{"category": r["category"], "colour": r.get("colour"), "pattern": r.get("pattern"),
                 "attributes": dict(r.get("attributes") or {})} for r in records],
        class_names=class_names, files=[str(r.get("file", "")) for r in records],
    )


def to_float(images: torch.Tensor) -> torch.Tensor:
    """[..., H, W, 3] uint8 -> [..., 3, H, W] float32 in [0, 1] (the layout the CLIP towers take)."""
    return images.movedim(-1, -3).float().div_(255)


def tokenize(tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """texts -> [N, context_length] int64 with the CLIP's BPE tokenizer (start, words, end, zero padding)."""
    return tokenizer(list(texts))


class TripletDataset(torch.utils.data.Dataset):
    """(image, sketch, caption tokens, category) triples of a split: item i is shape i // V with its view
    i % V and sketch i % S (V views and S sketches per shape) and the shape's caption."""

    def __init__(self, data: RetrievalSplit, tokenizer) -> None:
        if len(data) == 0 or data.views.shape[1] == 0 or data.sketches.shape[1] == 0:
            raise InvalidInputError("a triplet dataset needs shapes with views and sketches")
        self.data = data
        self.tokens = tokenize(tokenizer, data.captions)

    def __len__(self) -> int:
        return len(self.data) * self.data.views.shape[1]

    def __getitem__(self, index: int) -> dict:
        views = self.data.views.shape[1]
        shape, view = divmod(int(index), views)
        return {
            "image": to_float(self.data.views[shape, view]),
            "sketch": to_float(self.data.sketches[shape, view % self.data.sketches.shape[1]]),
            "tokens": self.tokens[shape],
            "category": self.data.categories[shape],
            "shape": shape,
        }


def hold_out(data: RetrievalSplit, fraction: float, seed: int = 0) -> tuple[RetrievalSplit, RetrievalSplit]:
    """(rest, held out): `data` cut by shape, stratified by category like the dataset's own split
    (`split_shapes`); for choosing a training recipe on a validation set without touching the test split."""
    names = [data.class_names[int(c)] for c in data.categories]
    marks = split_shapes(names, seed, fraction)
    parts = []
    for mark in ("train", "test"):
        keep = [i for i, m in enumerate(marks) if m == mark]
        if not keep:
            raise InvalidInputError(f"holding out {fraction} of {len(data)} shapes leaves an empty part",
                                    hint="use more shapes or another fraction")
        index = torch.tensor(keep, dtype=torch.int64)
        parts.append(dataclasses.replace(
            data, split=f"{data.split}/{'rest' if mark == 'train' else 'held-out'}", ids=[data.ids[i] for i in keep],
            views=data.views[index], sketches=data.sketches[index], photos=data.photos[index],
            captions=[data.captions[i] for i in keep], categories=data.categories[index],
            labels=[data.labels[i] for i in keep], files=[data.files[i] for i in keep]))
    return parts[0], parts[1]
