"""User images (style images, photos) into float arrays and tensors.

`load_image` reads any file Pillow opens and returns RGB(A) float32 in [0, 1], sRGB-encoded values as
stored (no colour management: an embedded ICC profile is ignored), row 0 at the top, EXIF orientation
applied. How storage types are scaled:
- 8-bit modes (1, L, LA, P, RGB, RGBA, CMYK, YCbCr, ...) go through Pillow's conversion to RGB(A) and are
  divided by 255. CMYK uses Pillow's naive conversion, without the file's ICC profile.
- 16-bit grayscale (I;16, I;16B, ...; Pillow's mode for a 16-bit grayscale PNG) is divided by 65535, and
  so is 32-bit integer 'I' (Pillow's mode for 16-bit TIFF and PGM data), clipped to [0, 1].
- 16-bit-per-channel colour PNGs (48-bit RGB, 64-bit RGBA, 32-bit LA) are opened by Pillow as 8-bit
  RGB / RGBA: the low byte of each channel is dropped (a 1/255 step, invisible for style images).
- Float 'F' values are taken as already in [0, 1] and clipped (an HDR image's highlights saturate
  rather than darkening the rest of the image, as scaling by the maximum would).
Multi-frame files (GIF, APNG, TIFF) give their first frame.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from backend.errors import InvalidInputError

MAX_IMAGE_SIDE = 8192
"""Largest width or height accepted, checked from the header before pixels are decoded."""
MIN_IMAGE_SIDE = 8
"""Smallest width or height accepted: smaller images carry no style or content to read."""

_FORMAT_HINT = "send a PNG or JPEG"
_SIXTEEN_BIT_GRAY = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def load_image(source: bytes | str | os.PathLike, *, what: str = "image", min_side: int = MIN_IMAGE_SIDE,
               max_side: int = MAX_IMAGE_SIDE, background: tuple[float, float, float] = (1.0, 1.0, 1.0),
               keep_alpha: bool = False) -> np.ndarray:
    """An encoded image (file path or bytes) -> [H, W, 3] float32 RGB in [0, 1], sRGB-encoded, row 0 at the top.

    Transparent pixels are composited over `background` (RGB in [0, 1], sRGB-encoded) unless keep_alpha,
    which returns [H, W, 4] with straight (not premultiplied) alpha, 1.0 where opaque or where the image
    has no alpha. `what` names the image in error messages ("style image", "photo"). Raises
    InvalidInputError for a missing or empty file, bytes that are not an image Pillow reads, a truncated
    file, and a width or height below min_side or above max_side (see the module docstring for scaling).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        label, data = f"the {what}", bytes(source)
        if not data:
            raise InvalidInputError(f"{label} is empty (0 bytes)", hint=_FORMAT_HINT)
        opener = io.BytesIO(data)
    else:
        path = Path(source)
        label = f"the {what} {path}"
        if path.is_dir():
            raise InvalidInputError(f"{label} is a folder, not an image file", hint="pass the image file itself")
        if not path.is_file():
            raise InvalidInputError(f"{label} does not exist", hint="check the path and that the file exists")
        if path.stat().st_size == 0:
            raise InvalidInputError(f"{label} is empty (0 bytes)", hint=_FORMAT_HINT)
        opener = path
    try:
        # Pillow warns on its own about huge images before our size check refuses them with one line.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(opener) as image:
                _check_size(image.size, label, min_side, max_side)  # from the header, before decoding pixels
                image.load()
                rgba = _to_rgba(ImageOps.exif_transpose(image))
    except Image.DecompressionBombError as exc:  # Pillow's own pixel cap, hit in Image.open before our check
        raise InvalidInputError(f"{label} is too large to decode: {exc}",
                                hint=f"downscale it to at most {max_side} pixels on its longer side") from exc
    except PermissionError as exc:
        raise InvalidInputError(f"{label} cannot be read: {exc}", hint="check the file's permissions") from exc
    except Image.UnidentifiedImageError as exc:
        raise InvalidInputError(f"{label} is not an image that can be read", hint=_FORMAT_HINT) from exc
    # What Pillow raises for a recognised file that does not decode: truncated (OSError), bad header
    # fields or chunks (ValueError, SyntaxError).
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInputError(f"{label} is truncated or corrupt: {exc}",
                                hint=f"re-export the image, or {_FORMAT_HINT}") from exc
    if keep_alpha:
        return rgba
    alpha = rgba[:, :, 3:]
    backdrop = np.asarray(background, dtype=np.float32)
    return np.ascontiguousarray(rgba[:, :, :3] * alpha + backdrop * (1.0 - alpha), dtype=np.float32)


def image_to_tensor(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """image: [H, W, C] float in [0, 1] (as `load_image` returns) -> [1, C, H, W] float32 on `device`."""
    if image.ndim != 3:
        raise ValueError(f"image must be [H, W, C], got shape {image.shape}")
    return torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32).permute(2, 0, 1)[None].to(device)


def resize_short_side(image: torch.Tensor, side: int) -> torch.Tensor:
    """image: [B, C, H, W] float -> [B, C, h, w] with min(h, w) == side, aspect ratio kept (rounded).

    Antialiased bilinear, so a downscale averages rather than aliases. Returns `image` itself when it
    already has that size.
    """
    if side < 1:
        raise ValueError(f"side must be at least 1, got {side}")
    height, width = image.shape[-2:]
    scale = side / min(height, width)
    size = (side, max(side, round(width * scale))) if height <= width else (max(side, round(height * scale)), side)
    if size == (height, width):
        return image
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)


def _check_size(size: tuple[int, int], label: str, min_side: int, max_side: int) -> None:
    width, height = size
    if min(width, height) < min_side:
        raise InvalidInputError(f"{label} is {width}x{height} pixels; it needs at least {min_side}x{min_side}",
                                hint=f"use an image at least {min_side} pixels on each side")
    if max(width, height) > max_side:
        raise InvalidInputError(f"{label} is {width}x{height} pixels, larger than {max_side} on a side",
                                hint=f"downscale it to at most {max_side} pixels on its longer side")


def _to_rgba(image: Image.Image) -> np.ndarray:
    """A decoded PIL image of any mode -> [H, W, 4] float32 in [0, 1], straight alpha."""
    if image.mode in _SIXTEEN_BIT_GRAY or image.mode == "F":
        raw = np.asarray(image)
        gray = raw.astype(np.float32) / (1.0 if image.mode == "F" else 65535.0)
        # A grayscale PNG's tRNS chunk: one raw value that is fully transparent.
        key = image.info.get("transparency")
        alpha = (raw != key).astype(np.float32) if isinstance(key, int) else np.ones_like(gray)
        return np.stack([np.clip(np.nan_to_num(gray), 0.0, 1.0)] * 3 + [alpha], axis=-1)
    has_alpha = image.mode in _ALPHA_MODES or "transparency" in image.info
    array = np.asarray(image.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255.0
    if not has_alpha:
        array = np.concatenate([array, np.ones_like(array[:, :, :1])], axis=-1)
    return np.ascontiguousarray(array)
