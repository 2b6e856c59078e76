"""Optional and GPU-only dependencies, imported in this one place.

Features check these flags when they are configured (not deep inside a run) and raise a
`DependencyMissingError` that names the fix.
"""

from __future__ import annotations

import importlib.util
import logging

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



# gsplat is imported on first use, not with this module: only Gaussian splatting on CUDA needs it
# (backend.render.splat), and its CUDA kernels are compiled or loaded at import.
HAS_GSPLAT = importlib.util.find_spec("gsplat") is not None


def require_gsplat():
    """Returns the `gsplat` module (CUDA Gaussian splatting rasterizer) or raises with the fix."""
    try:
        import gsplat
    except ImportError as exc:  # optional: the PyTorch splatting path needs nothing beyond torch
        raise DependencyMissingError(
            "gsplat is not installed; the CUDA Gaussian splatting rasterizer needs it",
            hint="pip install -e '.[gsplat]' on a CUDA machine (it builds CUDA kernels), "
                 "or use implementation='torch' (or 'auto')",
        ) from exc
    return gsplat


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


def require_diffusers(fallback: str = ""):
    """Returns the `diffusers` module (Zero123 score distillation, backend.reconstruct.zero123) or raises with the
    fix; `fallback` names the way round it (appended to the hint)."""
    try:
        import diffusers
        import transformers  # noqa: F401  (Zero123's image encoder)
    except ImportError as exc:  # the optional extra `zero123`
        raise DependencyMissingError(f"Zero123 guidance needs the {exc.name or 'diffusers'} package, which is not "
                                     "installed", hint="pip install -e '.[zero123]'" + (f", {fallback}" if fallback
                                                                                       else "")) from exc
    return diffusers


# transformers is imported on first use (seconds), not with this module; only CLIPSeg relevance maps need it
# (backend.segment.relevance), and it is never a required dependency.
HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


def require_transformers():
    """Returns the `transformers` module (CLIPSeg relevance maps) or raises with the fix."""
    try:
        import transformers
    except ImportError as exc:  # optional: the dense-CLIP relevance map needs nothing beyond open_clip
        raise DependencyMissingError(
            "transformers is not installed; CLIPSeg relevance maps need it",
            hint="pip install transformers (then fetch the CLIPSeg weights once into the Hugging Face cache), "
                 "or use relevance method 'dense-clip'",
        ) from exc
    return transformers


def optional_transformers():
    """Returns the `transformers` module, or None when it is not installed."""
    if not HAS_TRANSFORMERS:
        return None
    try:
        import transformers
    except ImportError:  # found on the path but broken (e.g. a missing dependency of its own)
        return None
    return transformers


# pymilvus is imported on first use, only by the Milvus store (backend.retrieve.milvus_store): an optional extra.
HAS_PYMILVUS = importlib.util.find_spec("pymilvus") is not None


def require_pymilvus():
    """Returns the `pymilvus` module (the Milvus store, Milvus Lite included) or raises with the fix."""
    try:
        import pymilvus
        # Milvus Lite answers every full scan with a "failed to get mvccTs" warning: noise for our users.
        logging.getLogger("pymilvus").setLevel(logging.ERROR)
    except ImportError as exc:  # optional: the embedded store (SQLite + FAISS) needs nothing beyond the package
        raise DependencyMissingError(
            "pymilvus is not installed; the Milvus store (--store milvus) needs it",
            hint="pip install atelier[milvus] (pymilvus and milvus-lite), or use --store embedded",
        ) from exc
    return pymilvus


# ray is imported on first use (about 1 s): only `atelier index --ray` needs it, and it is an optional extra.
HAS_RAY = importlib.util.find_spec("ray") is not None


def require_ray():
    """Returns the `ray` module (indexing on a Ray cluster) or raises with the fix."""
    try:
        import ray
    except ImportError as exc:  # an optional extra: without it the local indexing is used
        raise DependencyMissingError(
            "ray is not installed; indexing on a Ray cluster (--ray) needs it",
            hint="pip install 'atelier[ray]' (or pip install ray) on this machine and on every node of the "
                 "cluster, or index without --ray on this machine",
        ) from exc
    return ray
