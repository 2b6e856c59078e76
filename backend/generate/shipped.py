"""The shipped generator: the text-to-shape generator that ships in the package, as the domain CLIP does, and what
`atelier generate`, the generate job and the add-on's Generate panel use when no checkpoint is named.

`python build.py generator` trains it, seeded, on the procedural world with the domain CLIP (`clip_spec ==
"domain"`) into `backend/models/weights/generator_domain.pt`, an ordinary generator file (`generator.save_generator`).
It is trained locally, never downloaded.

The environment variable ATELIER_GENERATOR names another file to use as the default instead (a team's own
generator, or a tiny one in tests); a checkpoint named on the command line or in the job always wins.
"""

from __future__ import annotations

import os
from pathlib import Path

from backend.errors import WeightsMissingError
from backend.models.domain import shipped_row

SHIPPED_GENERATOR = Path(__file__).resolve().parents[1] / "models" / "weights" / "generator_domain.pt"
"""The shipped generator file that an unnamed checkpoint resolves to."""
GENERATOR_ENV = "ATELIER_GENERATOR"
"""When set (not blank): the generator file used when no checkpoint is named, instead of SHIPPED_GENERATOR."""
GENERATOR_CLIP = "domain"
"""The CLIP spec the shipped generator was trained with (its prompts are encoded with the same CLIP)."""
GENERATOR_LICENCE = "MIT"
"""Trained by this project from random initialisation on its own procedural world: Atelier's licence."""
REBUILD_HINT = ("run `python build.py generator` to train it (12 to 20 CPU minutes on 2 cores), or name a generator "
                "that `atelier train-generator` wrote")


def default_generator() -> Path:
    """The file an unnamed checkpoint means: $ATELIER_GENERATOR when set, else the shipped generator (whether or
    not it exists: `resolve_generator` checks)."""
    override = os.environ.get(GENERATOR_ENV, "").strip()
    return Path(override).expanduser() if override else SHIPPED_GENERATOR


def resolve_generator(checkpoint: str | None) -> Path:
    """The generator file to load: `checkpoint` when one is named (whether it is a generator is
    `load_generator`'s check), else the default (`default_generator`). WeightsMissingError, naming the file and
    the fix, when no checkpoint is named and the default file is missing."""
    named = (checkpoint or "").strip()
    if named:
        return Path(named).expanduser()
    path = default_generator()
    if path.is_file():
        return path
    if path != SHIPPED_GENERATOR:
        raise WeightsMissingError(f"no generator checkpoint was named and ${GENERATOR_ENV} names {path}, which is "
                                  "not a file", hint=f"point {GENERATOR_ENV} at a generator file, or unset it to use "
                                                     "the shipped generator")
    raise WeightsMissingError(f"no generator checkpoint was named and the shipped generator {path} is missing (it is "
                              "trained locally, never downloaded)", hint=REBUILD_HINT)


def shipped_generators() -> list[dict]:
    """The shipped generator as an `atelier models list` row (the keys of `backend.models.shipped_models()`):
    status "shipped", or "missing" with the command that trains it."""
    return [shipped_row("generator", "generator", SHIPPED_GENERATOR, GENERATOR_LICENCE,
                        f"the text-to-shape generator trained on the procedural world with the {GENERATOR_CLIP} CLIP "
                        "(the default of `atelier generate` and the Generate panel)",
                        "default generator; rebuild: python build.py generator", REBUILD_HINT)]
