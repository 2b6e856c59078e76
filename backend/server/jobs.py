"""Job kinds: the plain registry `JOB_HANDLERS` (kind name -> handler), segment-anything style."""

from __future__ import annotations

from collections.abc import Iterable

from backend.server.context import JobHandler
from backend.server.handlers import diagnostic, fetch_shape, generate, index, photo_to_3d, render, restyle, search, \
    segment, stylize
from shared_protocol import is_name


def build_registry(entries: Iterable[tuple[str, JobHandler]]) -> dict[str, JobHandler]:
    """A registry dict from (name, handler) pairs; a repeated name is an error, not a silent override."""
    registry: dict[str, JobHandler] = {}
    for name, handler in entries:
        register_job(name, handler, registry)
    return registry


def register_job(name: str, handler: JobHandler, registry: dict[str, JobHandler] | None = None) -> None:
    """Adds a job kind to `registry` (default `JOB_HANDLERS`); raises ValueError if the name is taken."""
    registry = JOB_HANDLERS if registry is None else registry
    if not is_name(name):
        raise ValueError(f"job kind {name!r} must be 1-64 characters of A-Z a-z 0-9 _ . : -")
    if name in registry:
        raise ValueError(f"job kind {name!r} is registered twice ({registry[name]!r} and {handler!r}); "
                         "rename one of them")
    registry[name] = handler


JOB_HANDLERS: dict[str, JobHandler] = build_registry([
    ("render", render.run), ("stylize", stylize.run), ("restyle", restyle.run),
    ("index", index.run), ("search", search.run), ("fetch_shape", fetch_shape.run),
    ("segment", segment.run), ("photo_to_3d", photo_to_3d.run), ("generate", generate.run),
])
"""Job kind -> handler: every kind `submit` accepts (plus the diagnostic ones with `test_jobs`)."""


def diagnostic_handlers() -> dict[str, JobHandler]:
    """The `echo`, `sleep` and `fail` kinds that tests and `doctor` use (ServerConfig.test_jobs)."""
    return build_registry([("echo", diagnostic.echo), ("sleep", diagnostic.sleep), ("fail", diagnostic.fail)])
