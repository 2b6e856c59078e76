"""Optional and GPU-only dependencies, imported in this one place.

Features check these flags when they are configured (not deep inside a run) and raise a
`DependencyMissingError` that names the fix.
"""

from __future__ import annotations

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
