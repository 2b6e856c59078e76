"""Hooks other packages register so the server can free their memory and list their models.

`backend.models` registers a release hook that drops its cached models and a lister that names the
weights present; the server calls them on `release` and when building `welcome`.
"""

from __future__ import annotations

import gc
import logging
from typing import Callable

import torch

RELEASE_HOOKS: dict[str, Callable[[], None]] = {}
"""Name -> function that drops a cache of models/tensors (called on `release`)."""

MODEL_LISTERS: dict[str, Callable[[], list[str]]] = {}
"""Name -> function returning the names of model weights present on this machine (sent in `welcome`)."""

log = logging.getLogger("backend.server")


def register_release_hook(name: str, hook: Callable[[], None]) -> None:
    """Registers `hook()` to run on `release`; a repeated name is an error."""
    _register(RELEASE_HOOKS, name, hook, "release hook")


def register_models_lister(name: str, lister: Callable[[], list[str]]) -> None:
    """Registers `lister()` whose names are reported in `welcome.models`; a repeated name is an error."""
    _register(MODEL_LISTERS, name, lister, "models lister")


def _register(registry: dict, name: str, fn: Callable, what: str) -> None:
    if name in registry and registry[name] is not fn:
        raise ValueError(f"{what} {name!r} is registered twice; rename one of them")
    registry[name] = fn


def release_memory(device: torch.device) -> list[str]:
    """Runs every release hook, collects garbage, empties the CUDA cache; returns the hooks that ran.

    A failing hook is logged and skipped: freeing the rest still helps.
    """
    done = []
    for name, hook in list(RELEASE_HOOKS.items()):
        try:
            hook()
            done.append(name)
        except Exception:  # one broken hook must not stop the others from freeing memory
            log.exception("release hook %r failed", name)
    gc.collect()
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    return done


def models_present() -> list[str]:
    """Names from every models lister, sorted and deduplicated; a failing lister is logged and skipped."""
    names: set[str] = set()
    for name, lister in list(MODEL_LISTERS.items()):
        try:
            names.update(lister())
        except Exception:  # welcome must still go out when one lister breaks
            log.exception("models lister %r failed", name)
    return sorted(names)
