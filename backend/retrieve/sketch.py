"""A user's sketch into the image the encoder takes: from an encoded image (PNG, any size and mode) or from
stroke polylines (DESIGN §2: a list of 2D polylines in [0, 1]², y down), rasterised antialiased.

Either way the result is a grey drawing, 1 = paper, 0 = ink: the paper level is normalised to white, the
ink's bounding box is centred and scaled to a fixed share of the frame (`SketchInputConfig.fill`, the share
a library shape takes in the index's line drawings), so where and how large the user drew does not matter.
A sketch with no ink is refused with a hint.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from backend.errors import InvalidInputError

MAX_STROKES = 4096
"""Polylines one sketch may have."""
MAX_STROKE_POINTS = 100_000
"""Points over all polylines of one sketch."""

BLANK_HINT = "draw dark strokes on white paper (a PNG), or send the strokes as polylines in [0, 1]²"


@dataclass(frozen=True)
class SketchInputConfig:
    """How user sketches are cleaned up and framed."""

    fill: float = 0.8
    """The longer side of the ink's bounding box is scaled to this share of the output side (the median share a
    shape takes in the index's line drawings is about 0.8); 0 keeps the user's framing (the image is only
    padded to a square and resized)."""
    ink_threshold: float = 0.25
    """A pixel is ink where its darkness (1 - grey, after the paper is made white) exceeds this."""
    min_ink_pixels: int = 3
    """Fewer ink pixels than this is a blank sketch."""
    paper_percentile: float = 90.0
    """The paper's grey level is this percentile of the image's brightness (a sketch is mostly paper); it
    is mapped to white, so a scan on grey paper looks like one on white."""
    stroke_px: float = 1.2
    """Width of rasterised strokes in output pixels (the index's line drawings are about one pixel wide)."""
    supersample: int = 4
    """Strokes are drawn at this multiple of the output size and averaged down (antialiasing)."""


def sketch_from_image(source: bytes | str | os.PathLike | np.ndarray | torch.Tensor, size: int,
                      config: SketchInputConfig | None = None, what: str = "sketch") -> torch.Tensor:
    """An encoded image (bytes or a path; any mode Pillow reads, transparency over white) or an array
    ([H, W] grey or [H, W, 3|4] float in [0, 1] or uint8) -> [size, size] float32 in [0, 1], 1 = paper.

    Raises InvalidInputError for an unreadable image and for a blank one (no ink).
    """
    config = config or SketchInputConfig()
    return _frame(_grey(source, what), size, config, what)


def sketch_from_strokes(strokes: Any, size: int, config: SketchInputConfig | None = None) -> torch.Tensor:
    """Polylines [[[x, y], ...], ...] in [0, 1]² (y down, (0, 0) the top-left corner) -> [size, size] float32
    in [0, 1], 1 = paper: framed like an image (the points' bounding box centred and scaled to `fill` of the
    side; fill 0 maps [0, 1]² onto the image), then drawn black `stroke_px` wide with round joins and caps,
    antialiased. A one-point polyline is a dot. Raises InvalidInputError naming the bad stroke."""
    config = config or SketchInputConfig()
    if not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an integer >= 16, got {size!r}")
    lines = check_strokes(strokes)
    ss = max(1, int(config.supersample))
    big = size * ss
    width = max(1.0, config.stroke_px * ss)
    if config.fill > 0:
        points = np.concatenate(lines)
        low, high = points.min(axis=0), points.max(axis=0)
        extent = float((high - low).max())
        # The ink, stroke width included, spans `fill` of the side (as `sketch_from_image` frames ink).
        scale = max(config.fill * big - width, 1.0) / extent if extent > 0 else 1.0
        offset = big / 2.0 - scale * (low + high) / 2.0
    else:
        scale, offset = float(big - 1), np.zeros(2)
    canvas = Image.new("L", (big, big), 255)
    draw = ImageDraw.Draw(canvas)
    radius = width / 2.0
    for line in lines:
        points = [(float(x), float(y)) for x, y in line * scale + offset]
        if len(points) > 1:
            draw.line(points, fill=0, width=int(round(width)), joint="curve")
        for x, y in (points[0], points[-1]):  # round caps
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=0)
    small = canvas.resize((size, size), Image.BOX) if ss > 1 else canvas
    return torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0).contiguous()


def check_strokes(strokes: Any) -> list[np.ndarray]:
    """The strokes as float64 [n, 2] arrays; InvalidInputError naming the first bad stroke."""
    hint = "send strokes as a list of polylines, each a list of [x, y] points with x, y in [0, 1] (y down)"
    if not isinstance(strokes, (list, tuple)):
        raise InvalidInputError(f"strokes must be a list of polylines, got {type(strokes).__name__}", hint)
    if not strokes:
        raise InvalidInputError("the sketch has no strokes", BLANK_HINT)
    if len(strokes) > MAX_STROKES:
        raise InvalidInputError(f"the sketch has {len(strokes)} strokes, more than {MAX_STROKES}",
                                "simplify the drawing")
    out, total = [], 0
    for i, line in enumerate(strokes):
        try:
            array = np.asarray(line, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"stroke {i} is not a list of [x, y] numbers", hint) from exc
        if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] == 0:
            raise InvalidInputError(f"stroke {i} must be a non-empty list of [x, y] points, got shape "
                                    f"{tuple(array.shape)}", hint)
        if not np.isfinite(array).all():
            raise InvalidInputError(f"stroke {i} has a coordinate that is not a finite number", hint)
        if array.min() < -1e-6 or array.max() > 1 + 1e-6:
            raise InvalidInputError(f"stroke {i} leaves [0, 1]² (coordinates from {array.min():.3g} to "
                                    f"{array.max():.3g})", hint)
        total += len(array)
        if total > MAX_STROKE_POINTS:
            raise InvalidInputError(f"the strokes have more than {MAX_STROKE_POINTS} points", "simplify the drawing")
        out.append(np.clip(array, 0.0, 1.0))
    return out


def _grey(source: Any, what: str) -> np.ndarray:
    """[H, W] float32 brightness in [0, 1] (transparent pixels are paper)."""
    if isinstance(source, torch.Tensor):
        source = source.detach().cpu().numpy()
    if isinstance(source, np.ndarray):
        array = source.astype(np.float32) / (255.0 if source.dtype == np.uint8 else 1.0)
        if array.ndim == 3 and array.shape[-1] in (3, 4):
            if array.shape[-1] == 4:
                array = array[..., :3] * array[..., 3:] + (1.0 - array[..., 3:])
            array = array @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        if array.ndim != 2:
            raise InvalidInputError(f"the {what} must be [H, W] or [H, W, 3|4], got shape {tuple(source.shape)}")
        if not np.isfinite(array).all():
            raise InvalidInputError(f"the {what} has values that are not finite numbers")
        return np.clip(array, 0.0, 1.0)
    from backend.images import load_image

    rgb = load_image(source, what=what)  # alpha composited over white
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _frame(grey: np.ndarray, size: int, config: SketchInputConfig, what: str) -> torch.Tensor:
    if not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an integer >= 16, got {size!r}")
    paper = float(np.percentile(grey, config.paper_percentile))
    if paper <= 0.05:
        raise InvalidInputError(f"the {what} is dark all over (no white paper)", BLANK_HINT)
    grey = np.clip(grey / paper, 0.0, 1.0)
    ink = (1.0 - grey) > config.ink_threshold
    if int(ink.sum()) < config.min_ink_pixels:
        raise InvalidInputError(f"the {what} is blank: no strokes were found", BLANK_HINT)
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    if config.fill > 0:
        top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        grey = grey[top:bottom, left:right]
        side = max(bottom - top, right - left) / config.fill
    else:
        side = max(grey.shape)
    # Pad to a centred square of paper, then resize (antialiased) to the output side.
    height, width = grey.shape
    side = int(math.ceil(max(side, height, width)))
    pad_y, pad_x = side - height, side - width
    tensor = torch.from_numpy(np.ascontiguousarray(grey))[None, None]
    tensor = F.pad(tensor, (pad_x // 2, pad_x - pad_x // 2, pad_y // 2, pad_y - pad_y // 2), value=1.0)
    if side != size:
        tensor = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False,
                               antialias=side > size)
    return tensor[0, 0].clamp(0, 1).contiguous()
