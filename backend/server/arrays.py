"""numpy <-> `shared_protocol.Array` (the protocol itself is stdlib-only)."""

from __future__ import annotations

import numpy as np

from shared_protocol import Array

_NUMPY_DTYPES = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "uint8": np.dtype("u1")}


def to_numpy(arr: Array, copy: bool = True) -> np.ndarray:
    """The array as numpy with its shape and dtype (float32/int32/uint8, native byte order).

    copy=False returns a read-only view of the message's bytes (no copy, but torch cannot write to it).
    """
    out = np.frombuffer(arr.data, dtype=_NUMPY_DTYPES[arr.dtype]).reshape(arr.shape)
    return out.astype(out.dtype.newbyteorder("="), copy=True) if copy else out


def from_numpy(a: np.ndarray) -> Array:
    """A float32, int32 or uint8 numpy array -> `Array` (little-endian, C order)."""
    a = np.asarray(a)
    name = {np.dtype(np.float32): "float32", np.dtype(np.int32): "int32", np.dtype(np.uint8): "uint8"}.get(
        a.dtype.newbyteorder("="))
    if name is None:
        raise ValueError(f"arrays travel as float32, int32 or uint8, got {a.dtype}; convert first, "
                         "e.g. a.astype(np.float32)")
    return Array(name, tuple(int(d) for d in a.shape), np.ascontiguousarray(a, dtype=_NUMPY_DTYPES[name]).tobytes())
