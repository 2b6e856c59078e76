"""The generator's training data: a shape library folder read into voxel grids, categories, a fingerprint, and
the CLIP image embeddings of rendered views that condition the flow.

A library is any folder of meshes (the formats `atelier index` reads); a shape's category is its folder's
`categories.json` entry or its folder name, as in retrieval (`backend.retrieve.library_files.category_of`).
Optional captions: a `captions.json` in a file's folder, {"file name": "a caption" or ["captions", ...]} (the
world writes one). Captions and the category's prompts ("a chair", "a photo of a chair"...) are the texts whose
CLIP embeddings condition the flow beside the views' image embeddings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from backend.errors import AtelierError, InvalidInputError
from backend.geometry.load import load_mesh
from backend.geometry.mesh import Mesh
from backend.geometry.normalize import normalize_to_unit_sphere
from backend.geometry.validate import validate_mesh
from backend.geometry.voxelize import voxelize
from backend.progress import CancelToken, ProgressFn, no_progress
from backend.retrieve.library_files import category_of, file_sha256, find_mesh_files
from backend.retrieve.views import IndexViewConfig, index_cameras
from backend.render.views import shaded_images


CAPTIONS_SIDECAR = "captions.json"
"""The per-folder file of captions: {"file name": "a caption" or ["a caption", ...]}."""
CATEGORY_PROMPTS = ("a {}", "a photo of a {}", "a 3d model of a {}")
"""How a category name becomes conditioning texts (the last two are CLIP's and the world captions' forms)."""


@dataclass
class ShapeLibrary:
    """A library read for training: shapes in `relpaths` order (sorted)."""

    root: Path
    relpaths: list[str]
    """Each shape's path relative to `root`, POSIX separators."""
    sha256: list[str]
    """Each shape's file digest (hex), as retrieval's index records it."""
    categories: list[str | None]
    """Each shape's category (None: the file sits at the top with no categories.json entry)."""
    meshes: list[Mesh]
    """Each mesh normalised to the unit sphere (the voxel frame)."""
    voxels: np.ndarray
    """bool [N, R, R, R] occupancy of each normalised mesh."""
    fingerprint: str
    """sha256 over the sorted (relative path, file sha256) pairs: two libraries with the same files match."""
    skipped: list[str] = field(default_factory=list)
    """'relpath: reason' for files that could not be read (they are left out)."""
    captions: list[list[str]] = field(default_factory=list)
    """Each shape's captions from its folder's captions.json (empty lists when there is none)."""

    def texts(self) -> list[list[str]]:
        """Each shape's conditioning texts: its captions, then its category's prompts (`CATEGORY_PROMPTS`)."""
        captions = self.captions or [[] for _ in self.relpaths]
        return [list(own) + ([t.format(category) for t in CATEGORY_PROMPTS] if category else [])
                for own, category in zip(captions, self.categories)]

    def category_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for category in self.categories:
            counts[category or ""] = counts.get(category or "", 0) + 1
        return dict(sorted(counts.items()))


def library_fingerprint(relpaths: list[str], sha256: list[str]) -> str:
    digest = hashlib.sha256()
    for relpath, file_digest in zip(relpaths, sha256):
        digest.update(f"{relpath}\0{file_digest}\n".encode())
    return digest.hexdigest()


def read_library(library_dir: str | Path, resolution: int = 32, max_shapes: int = 0,
                 progress: ProgressFn = no_progress, cancel: CancelToken | None = None) -> ShapeLibrary:
    """Loads, normalises and voxelises every mesh under `library_dir` (see the module doc).

    max_shapes > 0 keeps the first that many files (sorted by path). Unreadable files are skipped and named in
    `skipped`; fewer than two readable shapes is an InvalidInputError (the flow's batch-norm needs two).
    progress(done, total) after each file.
    """
    root = Path(library_dir).expanduser()
    if not root.is_dir():
        raise InvalidInputError(f"the shape library {root} is not a folder",
                                "pass a folder of meshes (e.g. one written by `atelier world DIR`/library)")
    paths = find_mesh_files(root)
    if max_shapes > 0:
        paths = paths[:max_shapes]
    if len(paths) < 2:
        raise InvalidInputError(f"the shape library {root} holds {len(paths)} mesh file(s); training needs at least 2",
                                "add meshes (obj, ply, stl, glb, gltf, off), one folder per category")
    relpaths, digests, categories, meshes, grids, skipped, warnings, cache = [], [], [], [], [], [], [], {}
    captions, caption_files = [], {}
    for done, path in enumerate(paths, 1):
        if cancel is not None:
            cancel.check()
        relpath = path.relative_to(root).as_posix()
        try:
            mesh, _ = normalize_to_unit_sphere(validate_mesh(load_mesh(path)))
            grid = voxelize(mesh, resolution)
        except (AtelierError, OSError, ValueError) as exc:
            skipped.append(f"{relpath}: {getattr(exc, 'message', None) or exc}")
        else:
            relpaths.append(relpath)
            digests.append(file_sha256(path))
            categories.append(category_of(path, root, cache, warnings))
            captions.append(captions_of(path, caption_files))
            meshes.append(mesh)
            grids.append(grid)
        progress(done, len(paths))
    if len(meshes) < 2:
        raise InvalidInputError(f"only {len(meshes)} of the {len(paths)} files in {root} could be read; training needs 2",
                                "; ".join(skipped[:3]) or "check the files")
    return ShapeLibrary(root=root, relpaths=relpaths, sha256=digests, categories=categories, meshes=meshes,
                        voxels=np.stack(grids), fingerprint=library_fingerprint(relpaths, digests), skipped=skipped,
                        captions=captions)


def captions_of(path: Path, loaded: dict[Path, dict]) -> list[str]:
    """A file's captions from its folder's captions.json ([] without one). InvalidInputError for a sidecar that
    is not a JSON object of strings or lists of strings (training on wrong captions would be silent)."""
    folder = path.parent
    if folder not in loaded:
        sidecar = folder / CAPTIONS_SIDECAR
        mapping = {}
        if sidecar.is_file():
            try:
                mapping = json.loads(sidecar.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InvalidInputError(f"{sidecar} cannot be read as JSON ({exc})",
                                        'write it as {"file name": "a caption", ...}, or remove it') from exc
            valid = isinstance(mapping, dict) and all(
                isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
                for v in mapping.values())
            if not valid:
                raise InvalidInputError(f"{sidecar} must map file names to a caption or a list of captions",
                                        'write it as {"chair_01.glb": "a tall wooden chair", ...}')
        loaded[folder] = mapping
    found = loaded[folder].get(path.name, [])
    return [c.strip() for c in ([found] if isinstance(found, str) else found) if c.strip()]


@torch.no_grad()
def view_embeddings(meshes: list[Mesh], clip, views: int = 6, device: torch.device | str = "cpu",
                    progress: ProgressFn = no_progress, cancel: CancelToken | None = None) -> torch.Tensor:
    """CLIP image embeddings of shaded views of each mesh (unit sphere frame): float32 [N, views, C], L2-normalised.

    The cameras are retrieval's index cameras (`IndexViewConfig`: even azimuths, two elevations) at the CLIP's
    image size; the meshes keep their own colours or textures.
    """
    config = IndexViewConfig(views=views).resolved(clip.image_size)
    cameras, lights = index_cameras(config, device)
    out = []
    for done, mesh in enumerate(meshes, 1):
        if cancel is not None:
            cancel.check()
        images = shaded_images(mesh, cameras, lights, config.size, device, config.ambient)
        out.append(clip.encode_image(images.permute(0, 3, 1, 2).to(clip.device)).float().cpu())
        progress(done, len(meshes))
    return torch.stack(out)


@torch.no_grad()
def text_embeddings(texts: list[list[str]], clip, fallback: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """CLIP text embeddings of each shape's texts (`ShapeLibrary.texts`): float32 [N, T, C], L2-normalised, T the
    most texts any shape has; a shape with fewer repeats its own cyclically, and one with none takes its rows
    of `fallback` ([N, V, C], its view embeddings) so that every row still belongs to its own shape."""
    from backend.stylize.losses import check_prompt

    flat = sorted({check_prompt(t, clip.context_length, clip.tokenizer) for own in texts for t in own})
    table = {}
    for start in range(0, len(flat), batch):
        chunk = flat[start:start + batch]
        table.update(zip(chunk, clip.encode_text(chunk).float().cpu()))
    width = max([len(own) for own in texts] + [1])
    rows = []
    for index, own in enumerate(texts):
        pool = [table[t.strip()] for t in own] or list(fallback[index])
        rows.append(torch.stack([pool[k % len(pool)] for k in range(width)]))
    return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def index_view_embeddings(db_dir: str | Path, library: ShapeLibrary, clip) -> tuple[torch.Tensor | None, str]:
    """The shaded-view embeddings a retrieval database already holds for this library, reused as flow conditions:
    ([N, K, C] float32 in `library` order, "") when the database was indexed from the same files (same relative
    paths and sha256) with this plain CLIP; (None, why not) otherwise, and the caller renders the views itself."""
    from backend.retrieve.database import LibraryDB, db_exists

    if not db_exists(db_dir):
        return None, f"{db_dir} holds no retrieval database"
    with LibraryDB.open(db_dir) as db:
        if db.encoder_id != f"clip:{clip.spec}":
            return None, f"the database was indexed with {db.encoder_id}, not clip:{clip.spec}"
        records = {r.relpath: r for r in db.shapes()}
        _, vectors, labels = db.read_vectors("shaded")
    wanted = []
    for relpath, file_digest in zip(library.relpaths, library.sha256):
        record = records.get(relpath)
        if record is None or record.sha256 != file_digest:
            return None, f"the database lacks {relpath} or indexed another version of it"
        wanted.append(record.id)
    per_shape = [vectors[labels == shape_id] for shape_id in wanted]
    if len({len(v) for v in per_shape}) != 1 or not len(per_shape[0]):
        return None, "the database holds different view counts per shape"
    return torch.from_numpy(np.stack(per_shape)).float(), ""
