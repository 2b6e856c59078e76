"""Which server-side paths a job may name: the folders the backend was started with (`atelier serve --data-root`).

A job's params that are paths (a request field whose spec says `path="file"`: db, library, checkpoints) or CLIP specs
that hold one (`path="clip"`: `ViT-B-32:/x.pt`, `/x/atelier_clip.pt`) are resolved (symlinks followed, `..`
collapsed) and refused outside the roots, before the job's handler runs, so nothing touches the disk outside them.
The handler then sees the resolved path. The CLI's own local use is not confined.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from backend.errors import InvalidInputError
from shared_protocol import limits
from shared_protocol.requests import REQUESTS

_HINT = "start the backend with --data-root DIR (repeatable) for the folders its jobs may use, or pick a path inside one"


SERVER_URLS = tuple(f"{scheme}://" for scheme in limits.MILVUS_SCHEMES)
"""Path params that start so name a server (a Milvus URI), which the store module checks, not a local file."""


@dataclass(frozen=True)
class PathPolicy:
    """Where job paths may point."""

    roots: tuple[Path, ...] = ()
    """Resolved folders (with everything below them) job paths must lie in."""
    confined: bool = False
    """Check paths at all: a server started with --data-root, or any CurveZMQ (remote) server. A local server
    on loopback without roots serves the user's own machine and takes any path."""

    @classmethod
    def build(cls, roots: tuple[str | os.PathLike, ...], remote: bool) -> PathPolicy:
        resolved = []
        for root in roots:
            path = Path(os.path.realpath(Path(root).expanduser()))
            if not path.is_dir():
                raise InvalidInputError(f"--data-root {root} is not a folder", hint="create it, or name an existing one")
            resolved.append(path)
        return cls(roots=tuple(resolved), confined=bool(resolved) or remote)

    def confine(self, value: str, what: str) -> str:
        """`value` resolved, when it lies inside a root; InvalidInputError naming it, the roots and the fix."""
        if not self.confined:
            return value
        if not self.roots:
            raise InvalidInputError(f"the {what} {value!r} is a path on the backend's machine, and this backend was "
                                    "started with no --data-root, so its jobs may use none", hint=_HINT)
        path = Path(value).expanduser()
        if not path.is_absolute():
            raise InvalidInputError(f"the {what} {value!r} is a relative path; this backend takes absolute paths "
                                    f"inside {', '.join(map(str, self.roots))}", hint="send the absolute path")
        real = Path(os.path.realpath(path))
        if not any(real == root or root in real.parents for root in self.roots):
            raise InvalidInputError(f"the {what} {value!r} resolves to {real}, outside the folders this backend may "
                                    f"use ({', '.join(map(str, self.roots))})", hint=_HINT)
        return str(real)

    def confine_params(self, kind: str, params: dict) -> dict:
        """The job's params with every path confined (`confine`); other values as they are."""
        cls = REQUESTS.get(kind)
        if not self.confined or cls is None:
            return params
        out = dict(params)
        for name, spec in cls.specs().items():
            value = params.get(name)
            if not isinstance(value, str) or not value.strip() or not getattr(spec, "path", ""):
                continue
            if spec.path == "file" and value.strip().lower().startswith(SERVER_URLS):
                continue  # a Milvus server's address (store "milvus"), not a file on this machine
            if spec.path == "file":
                out[name] = self.confine(value.strip(), f"{kind} param {name!r}")
            elif spec.path == "clip":
                out[name] = self._confine_clip(value.strip(), f"{kind} param {name!r}")
        return out

    def _confine_clip(self, spec: str, what: str) -> str:
        """A CLIP spec naming a file (`/x.pt`, `~/x.pt`, `ARCH:/x.pt`) has its file confined; names pass."""
        arch, sep, rest = spec.partition(":")
        if sep and ("/" in rest or "\\" in rest or rest.startswith("~")) and "/" not in arch:
            return f"{arch}:{self.confine(rest, what)}"
        if "/" in spec or "\\" in spec or spec.startswith("~") or spec.endswith((".pt", ".pth", ".bin",
                                                                                 ".safetensors")):
            return self.confine(spec, what)
        return spec
