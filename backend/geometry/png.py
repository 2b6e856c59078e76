"""PNG encoding for textures, rendered views and previews (decoding lives in `load.decode_texture`)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode_png(image: np.ndarray, compress_level: int = 6) -> bytes:
    """[H, W], [H, W, 3] or [H, W, 4] uint8, row 0 at the top -> PNG bytes (lower compress_level is faster)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()
