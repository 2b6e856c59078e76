"""Fine-tuning a pre-aligned point encoder on an artist's own indexed library (issue 23; `atelier finetune-points`).

The library's shapes are the training set and its metadata the captions: each entry's name split into words
(CamelCase, snake_case, digits dropped), its category, the leaf of its asset catalog, its tags and its description,
in a few phrasings ("a chair", "oak chair, wooden", the description). The teacher is the CLIP the library was
indexed with (`db.clip_spec`), through `train_points.teacher_targets`: the mean CLIP embedding of each shape's index
views and the text embeddings of its captions. Training starts from `init`, a point encoder already aligned to that
CLIP (by default the shipped `backend/models/weights/points_domain.pt` when the CLIP is "domain"), with InfoNCE or
the seed paper's hard contrastive loss (`PointTrainConfig.loss`, `beta`, `tau_plus`).

A shape's mesh is read as `service.shape_glb` reads it: the extracted GLB of an entry Blender read (a .blend asset,
FBX, USD, ...), else its library file. Entries whose file is gone or unreadable are skipped and reported.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from backend.errors import InvalidInputError
from backend.geometry.mesh import Mesh
from backend.progress import CancelToken, ProgressFn, no_progress
from backend.retrieve.db_schema import ShapeRecord
from backend.retrieve.descriptors import SHIPPED
from backend.retrieve.point_encoder import PointEncoder, load_point_encoder
from backend.retrieve.train_points import PointTrainConfig, recall_at_1, teacher_targets, train_point_encoder

TRAIN_HINT = "python -m backend.retrieve.train_points --clip {clip} --out PATH"
FINETUNE_DEFAULTS = {"steps": 300, "batch": 32, "lr": 1e-4, "warmup": 20}
"""Where fine-tuning differs from `PointTrainConfig`'s training from scratch: fewer steps at a lower peak rate."""


def finetune_config(**overrides) -> PointTrainConfig:
    """A PointTrainConfig with FINETUNE_DEFAULTS, then `overrides` (None values ignored); the warm-up is capped at a
    tenth of the steps. InvalidInputError for a bad value (PointTrainConfig's checks)."""
    values = {**FINETUNE_DEFAULTS, **{k: v for k, v in overrides.items() if v is not None}}
    steps = values["steps"]
    if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1 and "warmup" not in overrides:
        values["warmup"] = max(1, min(values["warmup"], steps // 10))
    return PointTrainConfig(**values)


_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_LETTERS = re.compile(r"[^\W\d_]+")


def name_words(name: str) -> list[str]:
    """The words of a shape's name, lower case: CamelCase and snake_case split, digits and the single letters they
    leave dropped ("OakChair_02" -> ["oak", "chair"], "table-lamp3" -> ["table", "lamp"], "Box2x" -> ["box"])."""
    return [word.lower() for word in _LETTERS.findall(_HUMP.sub(" ", name or "")) if len(word) > 1]


def _singular(text: str) -> str:
    """A category or catalog name as a singular noun phrase ("Chairs" -> "chair", "dining_tables" -> "dining
    table"): its words, plural endings folded, digits dropped."""
    from backend.retrieve.keywords import words

    return " ".join(word for word in words(text or "") if not any(c.isdigit() for c in word))


def _article(phrase: str) -> str:
    return f"{'an' if phrase[:1] in 'aeiou' else 'a'} {phrase}"


def shape_captions(record: ShapeRecord) -> list[str]:
    """Captions of a library entry from its metadata, distinct, most general first: "a <noun>" (the category, else
    the catalog's leaf, singular, else the name's last word), "a <name words> [<noun>]", "<name words>, <tags>", "<noun>,
    <other catalog levels>" and the description. Never empty ("an object" for an entry with no words at all)."""
    words = name_words(record.name)
    category = _singular(record.category or "")
    leaf = _singular((record.catalog or "").rstrip("/").rsplit("/", 1)[-1])
    noun = category or leaf or (words[-1] if words else "")
    tags = [" ".join(name_words(tag)) for tag in record.tags]
    tags = [tag for tag in tags if tag]
    named = " ".join(words)
    captions: list[str] = []
    if noun:
        captions.append(_article(noun))
    if named:
        captions.append(_article(named if noun in named.split() or not noun else f"{named} {noun}"))
    if tags:
        captions.append(", ".join([named or noun or "object", *tags]))
    levels = [_singular(level) for level in (record.catalog or "").split("/")]
    levels = [level for level in dict.fromkeys(levels) if level and level != noun]
    if levels and noun:
        captions.append(", ".join([noun, *levels]))
    description = " ".join((record.description or "").split())
    if description:
        captions.append(description)
    distinct = list(dict.fromkeys(c for c in captions if c))
    return distinct or ["an object"]


@dataclass
class LibraryShapes:
    """The library entries that can be trained on, with their meshes and captions, and those skipped."""

    records: list[ShapeRecord]
    meshes: list[Mesh]
    captions: list[list[str]]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(relpath, why) of each entry whose mesh could not be read."""


def library_meshes(db, progress: ProgressFn = no_progress, cancel: CancelToken | None = None) -> LibraryShapes:
    """Every entry of an open library (`stores.open_store`) as a Mesh with its captions; an entry whose library
    file or extracted GLB is gone, or cannot be read, is skipped with the reason."""
    from backend.geometry.load import load_mesh
    from backend.retrieve.service import shape_file

    records = db.shapes()
    kept = LibraryShapes([], [], [])
    for done, record in enumerate(records, 1):
        if cancel is not None:
            cancel.check()
        try:
            path = shape_file(db, record)
            if record.mesh:
                path = Path(db.directory) / record.mesh
                if not path.is_file():
                    raise InvalidInputError(f"its extracted mesh {record.mesh} is missing from {db.directory}")
            mesh = load_mesh(path)
        except InvalidInputError as exc:
            kept.skipped.append((record.relpath, exc.message))
        except (OSError, ValueError) as exc:
            kept.skipped.append((record.relpath, f"cannot read {record.file}: {exc}"))
        else:
            kept.records.append(record)
            kept.meshes.append(mesh)
            kept.captions.append(shape_captions(record))
        progress(done, len(records), stage="meshes")
    return kept


def resolve_init(init: PointEncoder | str | os.PathLike | None, clip_spec: str,
                 device: torch.device | str = "cpu") -> tuple[PointEncoder, str]:
    """(the encoder to start from, where it came from) for a library indexed with `clip_spec`: `init` itself, the
    file it names, or the shipped encoder when the CLIP is the domain CLIP. InvalidInputError for a missing file, an
    encoder for another CLIP, or no default for this CLIP."""
    from backend.retrieve.taskformer import canonical_clip_spec

    if isinstance(init, PointEncoder):
        if not init.clip_spec or canonical_clip_spec(init.clip_spec) != canonical_clip_spec(clip_spec):
            raise InvalidInputError(f"the init point encoder was trained for the CLIP {init.clip_spec!r}, but the "
                                    f"library was indexed with {clip_spec!r}: its embeddings are in another space",
                                    hint=f"start from a point encoder trained for {clip_spec}: "
                                         f"{TRAIN_HINT.format(clip=clip_spec)}")
        return init, "(given encoder)"
    if init is None:
        shipped = SHIPPED.get(canonical_clip_spec(clip_spec))
        if shipped is None:
            raise InvalidInputError(f"no point encoder ships for the CLIP {clip_spec!r} the library was indexed with "
                                    f"(the shipped ones are for {', '.join(map(repr, SHIPPED))})",
                                    hint=f"pass --init PATH, a point encoder trained for it: "
                                         f"{TRAIN_HINT.format(clip=clip_spec)}")
        if not shipped.is_file():
            raise InvalidInputError(f"the shipped point encoder {shipped} is not present",
                                    hint=f"pass --init PATH, or train one: python build.py points")
        init = shipped
    return load_point_encoder(init, clip_spec, device), str(init)


@dataclass
class FinetuneResult:
    """What a fine-tuning run did and measured."""

    model: PointEncoder
    records: list[dict[str, float]]
    """Each step's losses (train_point_encoder)."""
    shapes: int
    """Library entries trained on."""
    skipped: list[tuple[str, str]]
    clip_spec: str
    init: str
    """Where the starting weights came from."""
    recall_before: dict[str, float]
    """Train recall@1 of the init encoder on the library: {"image", "text"} (the first caption)."""
    recall_after: dict[str, float]
    seconds: float
    teacher_seconds: float


def _recalls(model: PointEncoder, data) -> dict[str, float]:
    clouds = data.clouds[:, 0]
    return {"image": recall_at_1(model, clouds, data.image), "text": recall_at_1(model, clouds, data.text[:, 0])}


def finetune_points(db_uri: str | os.PathLike, config: PointTrainConfig, store: str = "embedded",
                    init: PointEncoder | str | os.PathLike | None = None, out: str | os.PathLike | None = None,
                    device: torch.device | str = "cpu", progress: ProgressFn = no_progress,
                    cancel: CancelToken | None = None, clip: str | None = None) -> FinetuneResult:
    """Fine-tunes `init` (module doc) on the shapes of the indexed library at `db_uri` with the CLIP it was indexed
    with (`clip`, when given, must name the same); writes the checkpoint to `out` when given. InvalidInputError for
    fewer than 2 readable shapes, a missing init file or an init for another CLIP (bad loss, beta, tau_plus or
    steps fail earlier, in PointTrainConfig)."""
    from backend.models.clip import load_clip
    from backend.retrieve.stores import open_store
    from backend.retrieve.taskformer import check_clip_spec

    started = time.perf_counter()
    with open_store(db_uri, store) as db:
        clip_spec = check_clip_spec(db.clip_spec, clip, f"the shape library {db_uri}")
        model, source = resolve_init(init, clip_spec, device)
        shapes = library_meshes(db, progress, cancel)
    if len(shapes.meshes) < 2:
        skipped = f" ({len(shapes.skipped)} skipped: their files are gone)" if shapes.skipped else ""
        raise InvalidInputError(f"the library {db_uri} has {len(shapes.meshes)} readable shape(s){skipped}; "
                                f"contrastive fine-tuning needs at least 2",
                                hint="index more shapes first: atelier index LIBRARY_DIR --db DIR")
    teacher = load_clip(clip_spec, device)
    data = teacher_targets(shapes.meshes, shapes.captions, teacher, config, device, progress, cancel)
    teacher_seconds = time.perf_counter() - started
    before = _recalls(model, data)
    tuned, records = train_point_encoder(data, config, out=out, device=device, progress=progress, cancel=cancel,
                                         init=model)
    return FinetuneResult(tuned, records, len(shapes.meshes), shapes.skipped, teacher.spec, source, before,
                          _recalls(tuned, data), time.perf_counter() - started, teacher_seconds)
