"""Optional and GPU-only dependencies, imported in this one place.

Features check these flags when they are configured (not deep inside a run) and raise a
`DependencyMissingError` that names the fix.
"""

from __future__ import annotations

import importlib.util

from backend.errors import DependencyMissingError

try:
    import nvdiffrast.torch as nvdiffrast_torch

    HAS_NVDIFFRAST = True
except ImportError as _exc:  # not on the package registry; built from source on CUDA machines
    nvdiffrast_torch = None
    HAS_NVDIFFRAST = False
    _NVDIFFRAST_ERROR = _exc


def require_nvdiffrast():
    """Returns `nvdiffrast.torch` or raises with the fix."""
    if not HAS_NVDIFFRAST:
        raise DependencyMissingError(
            "nvdiffrast is not installed",
            hint="build it from its source repository on a CUDA machine (see README, 'GPU renderer'; "
            "NVIDIA Source Code License, non-commercial) or use implementation='torch'",
        ) from _NVDIFFRAST_ERROR
    return nvdiffrast_torch



# faiss is imported on first use (about 0.2 s), not with this module: most commands never search.
HAS_FAISS = importlib.util.find_spec("faiss") is not None


def require_faiss():
    """Returns the `faiss` module (vector search for the shape library) or raises with the fix."""
    try:
        import faiss
    except ImportError as exc:  # a dependency of the package; missing only in a hand-made environment
        raise DependencyMissingError(
            "faiss is not installed; shape library search needs it",
            hint="pip install faiss-cpu (or faiss-gpu on a CUDA machine)",
        ) from exc
    return faiss
