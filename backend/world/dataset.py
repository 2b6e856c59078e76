"""The world written to disk: a mesh library for the indexer and an image dataset with a manifest.

Layout of `out_dir`:
    library/<category>_<index>.glb     one textured mesh per shape (glTF frame, metres)
    library/categories.json            {"chair_0007.glb": "chair", ...}
    views/<id>_<k>.png                 shaded renders over white (RGB)
    sketches/<id>_<k>.png              line drawings (greyscale, white paper)
    photos/<id>_<k>.png                the shape over clutter with distractors (RGB)
    masks/<id>_<k>.png                 the shape's visible pixels in the matching photo (0 / 255)
    manifest.json                      per shape: labels, caption, split, seed and its file paths

Paths in the manifest are relative to `out_dir` with forward slashes. The split is by shape
(a shape's images are all train or all test), stratified by category, seeded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from backend.errors import InvalidInputError
from backend.geometry.glb import export_glb
from backend.progress import CancelToken, ProgressFn, no_progress
from backend.world.appearance import COLOURS, PATTERNS
from backend.world.families import CATEGORIES, FAMILIES
from backend.world.shape import make_shape
from backend.world.views import PhotoConfig, SketchConfig, ViewConfig, render_photo, render_sketches, render_views

MANIFEST = "manifest.json"
FORMAT = "atelier-world"
VERSION = 1
"""Manifest format version; `read_manifest` refuses others."""


def dataset_seeds(shapes: int, seed: int, categories=None) -> list[tuple[int, str]]:
    """(shape seed, category) for shape indices 0..shapes-1: categories round-robin (balanced), the
    first round in a seeded order; shape seeds derived from (seed, index) so a bigger dataset keeps
    the smaller one's shapes."""
    cats = list(categories or CATEGORIES)
    order = [cats[k] for k in np.random.default_rng(seed).permutation(len(cats))]
    return [(int(np.random.SeedSequence([seed, i]).generate_state(1)[0]) & 0x7FFFFFFF, order[i % len(order)])
            for i in range(shapes)]


def split_shapes(categories: list[str], seed: int, test_fraction: float = 0.2) -> list[str]:
    """"train" / "test" for each shape, stratified: in each category round(n * test_fraction) test
    shapes (at least one when the category has two or more, never all of them), chosen by `seed`."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    split = ["train"] * len(categories)
    rng = np.random.default_rng([seed, 1])
    for category in sorted(set(categories)):
        members = [i for i, c in enumerate(categories) if c == category]
        n_test = int(round(len(members) * test_fraction))
        if len(members) >= 2 and test_fraction > 0:
            n_test = min(max(n_test, 1), len(members) - 1)
        n_test = min(n_test, len(members) - 1)
        for i in rng.permutation(members)[:n_test]:
            split[int(i)] = "test"
    return split


def _png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG", optimize=False, compress_level=1)


def _to_bytes(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


def write_dataset(out_dir: str | Path, shapes: int, seed: int = 0, views: int = 4, size: int = 128,
                  sketches: int | None = None, photos: int = 1, test_fraction: float = 0.2,
                  device: torch.device | str = "cpu", overwrite: bool = False,
                  view_config: ViewConfig | None = None, sketch_config: SketchConfig | None = None,
                  photo_config: PhotoConfig | None = None, progress: ProgressFn = no_progress,
                  cancel: CancelToken | None = None) -> dict:
    """Generates `shapes` shapes and writes the library, images and manifest (layout in the module doc).

    sketches defaults to `views`; photos (each with its mask) per shape. Deterministic per seed.
    Calls progress(done, shapes) after each shape and checks `cancel` before each.
    Returns {"shapes", "files", "train", "test", "categories": {name: count}, "seconds"}.
    Raises InvalidInputError when out_dir already holds a manifest and overwrite is False.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    sketches = views if sketches is None else sketches
    for name, value, low in (("shapes", shapes, 1), ("seed", seed, 0), ("views", views, 0),
                             ("sketches", sketches, 0), ("photos", photos, 0), ("size", size, 16)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise InvalidInputError(f"{name} must be an integer >= {low}, got {value!r}",
                                    "pass a smaller or larger value on the command line")
    if (out / MANIFEST).exists() and not overwrite:
        raise InvalidInputError(f"{out} already holds a world dataset ({MANIFEST})",
                                "choose an empty folder, or delete the old dataset first")
    folders = {k: out / k for k in ("library", "views", "sketches", "photos", "masks")}
    try:
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(f"cannot create {out}: {exc.strerror or exc}",
                                "check that the parent folder exists and is writable") from exc

    plan = dataset_seeds(shapes, seed)
    split = split_shapes([c for _, c in plan], seed, test_fraction)
    records, library, files = [], {}, 0
    for index, (shape_seed, category) in enumerate(plan):
        if cancel is not None:
            cancel.check()
        shape = make_shape(shape_seed, category)
        ident = f"{category}_{index:04d}"
        generator = torch.Generator().manual_seed(shape_seed)
        glb = f"{ident}.glb"
        export_glb(shape.mesh, folders["library"] / glb, name=ident)
        library[glb] = category
        record = {
            "id": ident, "file": f"library/{glb}", "category": category, "attributes": dict(shape.attributes),
            "colour": shape.colour, "pattern": shape.pattern, "caption": shape.caption, "seed": shape.seed,
            "split": split[index], "views": [], "sketches": [], "photos": [], "masks": [],
        }
        if views:
            for k, image in enumerate(render_views(shape, views, size, generator, device, view_config)):
                _png(_to_bytes(image), folders["views"] / f"{ident}_{k}.png")
                record["views"].append(f"views/{ident}_{k}.png")
        if sketches:
            drawings = render_sketches(shape, sketches, size, generator, device, sketch_config, view_config)
            for k, image in enumerate(drawings):
                _png(_to_bytes(image), folders["sketches"] / f"{ident}_{k}.png")
                record["sketches"].append(f"sketches/{ident}_{k}.png")
        for k in range(photos):
            photo = render_photo(shape, size, generator, device, photo_config)
            _png(_to_bytes(photo.image), folders["photos"] / f"{ident}_{k}.png")
            _png(photo.mask.cpu().numpy().astype(np.uint8) * 255, folders["masks"] / f"{ident}_{k}.png")
            record["photos"].append(f"photos/{ident}_{k}.png")
            record["masks"].append(f"masks/{ident}_{k}.png")
        files += 1 + len(record["views"]) + len(record["sketches"]) + 2 * len(record["photos"])
        records.append(record)
        progress(index + 1, shapes)

    (folders["library"] / "categories.json").write_text(json.dumps(library, indent=1, sort_keys=True))
    # Captions beside the meshes: `atelier train-generator --library` conditions its flow on them too.
    captions = {Path(r["file"]).name: [r["caption"]] for r in records}
    (folders["library"] / "captions.json").write_text(json.dumps(captions, indent=1, sort_keys=True))
    manifest = {
        "format": FORMAT, "version": VERSION, "seed": seed, "size": size, "test_fraction": test_fraction,
        "categories": list(CATEGORIES), "colours": list(COLOURS), "patterns": list(PATTERNS),
        "attributes": {name: {k: list(v) for k, v in f.attributes.items()} for name, f in FAMILIES.items()},
        "shapes": records,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    files += 3  # categories.json, captions.json, the manifest
    counts = {c: sum(1 for r in records if r["category"] == c) for c in CATEGORIES}
    return {
        "shapes": len(records), "files": files,
        "train": sum(1 for r in records if r["split"] == "train"),
        "test": sum(1 for r in records if r["split"] == "test"),
        "categories": {c: n for c, n in counts.items() if n},
        "seconds": round(time.perf_counter() - started, 3),
    }


def read_manifest(directory: str | Path) -> dict:
    """The manifest of a dataset written by `write_dataset` (paths relative to `directory`).

    Raises InvalidInputError when it is missing, unreadable, or of another format or version.
    """
    path = Path(directory) / MANIFEST
    hint = "write the dataset with `atelier world DIR --shapes N` first"
    if not path.is_file():
        raise InvalidInputError(f"no world dataset in {directory}: {MANIFEST} is missing", hint)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}", "the file is damaged; write the dataset again") from exc
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise InvalidInputError(
            f"{path} is format {manifest.get('format')!r} version {manifest.get('version')!r}, "
            f"expected {FORMAT!r} version {VERSION}", "write the dataset again with this version of Atelier")
    return manifest


def world_command(out_dir: str | Path, shapes: int, seed: int = 0, size: int = 128, views: int = 4,
                  progress: ProgressFn = no_progress, device: torch.device | str = "cpu",
                  cancel: CancelToken | None = None, overwrite: bool = False) -> dict:
    """What `atelier world DIR --shapes N --seed S [--size PX] [--views V]` runs.

    Returns the report figures: {"shapes", "files", "train", "test", "categories", "seconds",
    "out_dir", "library", "manifest"}.
    """
    figures = write_dataset(out_dir, shapes, seed=seed, views=views, size=size, device=device,
                            progress=progress, cancel=cancel, overwrite=overwrite)
    out = Path(out_dir)
    figures.update(out_dir=str(out), library=str(out / "library"), manifest=str(out / MANIFEST))
    return figures
