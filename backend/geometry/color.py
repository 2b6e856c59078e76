"""Colour encodings: sRGB (what 8-bit files and images store) versus linear (what `Mesh` stores)."""

from __future__ import annotations

import numpy as np


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """values: [...] float in [0, 1], sRGB-encoded -> [...] float32 linear (the exact IEC 61966-2-1 curve)."""
    c = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(values: np.ndarray) -> np.ndarray:
    """values: [...] float linear in [0, 1] -> [...] float32 sRGB-encoded in [0, 1]."""
    c = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1.0 / 2.4) - 0.055).astype(np.float32)


def to_unit_float(values: np.ndarray) -> np.ndarray:
    """Colour channels of any storage type -> float32 in [0, 1] (no change of encoding).

    uint8 / uint16 are divided by their maximum, as glTF's normalized accessors and PLY do; floats are
    clipped to [0, 1].
    """
    array = np.asarray(values)
    if array.dtype.kind in "ui":
        return (array.astype(np.float64) / float(np.iinfo(array.dtype).max)).clip(0.0, 1.0).astype(np.float32)
    return np.clip(array.astype(np.float32), 0.0, 1.0)
