"""Typed arrays on the wire: a header ref `{"blob": i, "dtype": ..., "shape": [...]}` plus one blob frame.

Little-endian, C order. Standard library only: the add-on fills `array.array` buffers with
`foreach_get` and wraps them with `Array.from_buffer`; the backend converts with numpy in
`backend/server/arrays.py`.
"""

from __future__ import annotations

import array as _array
import math
import sys
from dataclasses import dataclass

from shared_protocol.errors import ProtocolError
from shared_protocol.limits import MAX_NDIM

DTYPES: dict[str, tuple[str, int]] = {"float32": ("f", 4), "int32": ("i", 4), "uint8": ("B", 1)}
"""Wire dtype -> (`array` module typecode, bytes per item)."""

_BIG_ENDIAN = sys.byteorder == "big"


def check_array_spec(dtype: object, shape: object, nbytes: int, field: str) -> tuple[int, ...]:
    """Validates a dtype/shape pair against a byte length; returns the shape as a tuple of ints.

    Raises `ProtocolError` naming `field` when the dtype is unknown, the shape is not a short list of
    non-negative ints, or `nbytes != prod(shape) * itemsize`.
    """
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ProtocolError(f"array '{field}' has dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    if not isinstance(shape, (list, tuple)) or len(shape) > MAX_NDIM:
        raise ProtocolError(f"array '{field}' shape must be a list of at most {MAX_NDIM} integers, got {shape!r:.80}")
    dims = []
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 0:
            raise ProtocolError(f"array '{field}' shape {list(shape)!r:.80} must hold non-negative integers")
        dims.append(dim)
    expected = math.prod(dims) * DTYPES[dtype][1]
    if expected != nbytes:
        raise ProtocolError(
            f"array '{field}' with dtype {dtype} and shape {tuple(dims)} needs {expected} bytes, "
            f"but its blob has {nbytes}"
        )
    return tuple(dims)


@dataclass(frozen=True)
class Array:
    """An n-dimensional array as raw little-endian bytes, C order."""

    dtype: str
    """"float32" | "int32" | "uint8"."""
    shape: tuple[int, ...]
    """Dimensions; `len(data) == prod(shape) * itemsize`."""
    data: bytes
    """The elements, little-endian, row-major."""

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes):
            raise ProtocolError(f"array data must be bytes, got {type(self.data).__name__}")
        object.__setattr__(self, "shape", check_array_spec(self.dtype, self.shape, len(self.data), "array"))

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @classmethod
    def from_buffer(cls, buffer: "_array.array | bytes | memoryview", dtype: str, shape: tuple[int, ...]) -> "Array":
        """Wraps a native-endian buffer (e.g. an `array.array('f')` filled by Blender's `foreach_get`).

        Checks that the buffer's item size matches `dtype`; converts to little-endian on big-endian hosts.
        """
        if dtype not in DTYPES:
            raise ProtocolError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        typecode, itemsize = DTYPES[dtype]
        if isinstance(buffer, _array.array) and buffer.itemsize != itemsize:
            raise ProtocolError(f"an array.array of itemsize {buffer.itemsize} cannot be sent as {dtype}; "
                                f"use array.array({typecode!r}, ...)")
        if _BIG_ENDIAN and itemsize > 1:
            swapped = _array.array(typecode)
            swapped.frombytes(bytes(buffer))
            swapped.byteswap()
            return cls(dtype, tuple(shape), swapped.tobytes())
        return cls(dtype, tuple(shape), bytes(buffer))

    @classmethod
    def from_list(cls, values: "list | tuple", dtype: str, shape: tuple[int, ...] | None = None) -> "Array":
        """Builds an array from a flat or nested list of numbers; `shape` defaults to the nesting."""
        flat, nested_shape = _flatten(values)
        if dtype not in DTYPES:
            raise ProtocolError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        try:
            buf = _array.array(DTYPES[dtype][0], flat)
        except (TypeError, OverflowError) as exc:
            raise ProtocolError(f"values do not fit dtype {dtype}: {exc}") from exc
        return cls.from_buffer(buf, dtype, tuple(shape) if shape is not None else nested_shape)

    def to_array(self) -> _array.array:
        """The elements as a flat native-endian `array.array` (for Blender's `foreach_set`)."""
        typecode, itemsize = DTYPES[self.dtype]
        out = _array.array(typecode)
        out.frombytes(self.data)
        if _BIG_ENDIAN and itemsize > 1:
            out.byteswap()
        return out

    def to_list(self) -> list:
        """The elements as nested lists following `shape` (small arrays only: this is slow)."""
        return _nest(self.to_array().tolist(), self.shape)


def _nest(flat: list, shape: tuple[int, ...]):
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return list(flat)
    step = math.prod(shape[1:])
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def _flatten(values) -> tuple[list, tuple[int, ...]]:
    """Flattens nested lists of equal lengths; returns (flat values, shape)."""
    if not isinstance(values, (list, tuple)):
        return [values], ()
    if not values:
        return [], (0,)
    parts = [_flatten(v) for v in values]
    inner = parts[0][1]
    if any(p[1] != inner for p in parts):
        raise ProtocolError("nested lists have ragged lengths; every row must have the same length")
    return [x for p in parts for x in p[0]], (len(values), *inner)
