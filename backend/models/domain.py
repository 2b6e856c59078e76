"""The domain CLIP's resolver (`--clip domain`): its architecture and the shipped weights it loads.

The domain CLIP is a small open_clip CLIP trained from scratch on the procedural world (`backend/world/`), so
quality checks have a CLIP that knows the world when no real weights can be fetched. This module is all that
loading it needs; the trainer (`domain_train.py`, `python build.py domain-clip`) renders world shapes and is
imported only by training code, tests and benchmarks, so `import backend.models` never loads the world.

The weights ship in the package (`weights/domain_clip.pt`, an Atelier CLIP checkpoint with an fp16 state dict,
about 9 MB); `load_clip("domain")` reads it through the same checkpoint loader as any Atelier checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch

from backend.errors import InvalidInputError, WeightsMissingError
from backend.models.catalogue import human_size
from backend.models.clip import ClipModel, TinyClipConfig, _load_atelier_checkpoint, register_clip_resolver

DOMAIN_WEIGHTS = Path(__file__).resolve().parent / "weights" / "domain_clip.pt"
"""The shipped checkpoint `load_clip("domain")` reads."""
REBUILD_HINT = "run `python build.py domain-clip` to train it (about 10 CPU minutes)"
DOMAIN_LICENCE = "MIT"
"""Trained by this project from random initialisation on its own procedural world: Atelier's licence."""

DOMAIN_MODEL = TinyClipConfig(
    embed_dim=64,
    image_size=64,
    vision_layers=(1, 1, 1, 1),
    vision_width=16,
    vision_head_width=32,
    text_width=64,
    text_heads=4,
    text_layers=2,
    context_length=32,
    seed=0,
)
"""The architecture: a ModifiedResNet image tower (stem 16 wide, one bottleneck per stage, 1.3 M parameters)
and a 2-block text transformer of width 64 whose 49408 x 64 token table is most of the file. World captions
are at most 28 tokens, so the context is 32."""


def _domain_resolver(spec: str, device: torch.device, allow_download: bool) -> ClipModel:
    """`load_clip("domain")`: the shipped checkpoint, read by the Atelier checkpoint loader."""
    path = DOMAIN_WEIGHTS
    if not path.is_file():
        raise WeightsMissingError(f"the domain CLIP file {path} is missing (it is trained locally, never downloaded)",
                                  hint=REBUILD_HINT)
    try:
        return _load_atelier_checkpoint(path, spec, device)
    except InvalidInputError as exc:
        raise WeightsMissingError(f"the domain CLIP file {path} is damaged: {exc.message}", hint=REBUILD_HINT) from exc


register_clip_resolver("domain", _domain_resolver, replace=True)


def shipped_models() -> list[dict]:
    """The weights that ship inside the package (today the domain CLIP), as `atelier models list` rows.

    Same keys as `store.list_models()` rows, with `status` "shipped" (or "missing" when the file was deleted)
    and a `notes` line. Kept apart from the catalogue: nothing to pull or import, and `welcome` lists only
    what a user fetched.
    """
    return [shipped_row("domain", "clip", DOMAIN_WEIGHTS, DOMAIN_LICENCE,
                        "the small CLIP trained on the procedural world (--clip domain)",
                        "--clip domain; rebuild: python build.py domain-clip", REBUILD_HINT)]


def shipped_row(name: str, kind: str, path: Path, licence: str, description: str, notes: str,
                missing_notes: str) -> dict:
    """One `atelier models list` row for weights shipped in the package at `path`: status "shipped", or
    "missing" (with `missing_notes`, the command that rebuilds them) when the file is not there."""
    present = path.is_file()
    size = path.stat().st_size if present else 0
    return {
        "name": name, "kind": kind, "present": present, "status": "shipped" if present else "missing",
        "path": str(path) if present else None, "size": size, "size_human": human_size(size),
        "licence": licence, "description": description, "notes": notes if present else missing_notes,
        "url": None,
    }
