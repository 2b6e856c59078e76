"""Sketch strokes for the search job: 3D or screen polylines -> 2D polylines in [0, 1]² (y down). No bpy.

The `search` job takes a drawing as `strokes`: a list of polylines [[x, y], ...] in [0, 1]², (0, 0) the top-left
corner (DESIGN §2). The add-on gets them from the viewport's annotation strokes or a Grease Pencil object
(`sketch_input.py`), projects the 3D points with a 4x4 view-projection matrix (the 3D view's
`region_3d.perspective_matrix`, a camera's projection times its inverse world matrix, or `FRONT_ORTHO`), and fits
the result into the unit square keeping its proportions. The backend frames the drawing by its bounding box
anyway, so only the shape of the strokes matters, not where they sat in the view.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .errors import AddonError

MAX_STROKES = 1024
"""Polylines one sketch sends (the backend takes 4096); more are dropped, the longest kept."""
MAX_POINTS = 20_000
"""Points one sketch sends over all its polylines (the backend takes 100,000; the JSON header holds 1 MiB):
longer strokes are thinned evenly, keeping their ends."""
DECIMALS = 5
"""Coordinates are rounded to this many decimals (a 100,000 px drawing would still be exact to the pixel)."""
MARGIN = 0.05
"""Paper left around the drawing on each side when it is fitted into [0, 1]²."""
NO_STROKES_HINT = ("draw in the 3D Viewport with the Annotate tool (or in a Grease Pencil object), or choose an "
                   "image file as the sketch")

FRONT_ORTHO = np.array([[1.0, 0.0, 0.0, 0.0],
                        [0.0, 0.0, 1.0, 0.0],
                        [0.0, -1.0, 0.0, 0.0],
                        [0.0, 0.0, 0.0, 1.0]])
"""Blender's Front view (numpad 1) as an orthographic view-projection: world X to the right, world Z up, looking
along +Y. Used when there is neither a 3D view nor a camera to project through."""


def project(points: np.ndarray, matrix: np.ndarray, aspect: float = 1.0, near: float = 1e-6) -> list[np.ndarray]:
    """World points of one polyline -> its pieces on the screen.

    points: [N, 3] float, world space. matrix: [4, 4] row-major view-projection (to clip space, Blender's
    `perspective_matrix` convention: y up). aspect: the view's width / height, so a circle stays round.
    Returns [M, 2] float64 arrays in view units: x in [0, aspect], y in [0, 1] with y down across the view (points
    outside the view keep going past those bounds). Points behind the eye (clip w <= near) are dropped and split
    the polyline there; a piece may be a single point.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    matrix = np.asarray(matrix, dtype=np.float64).reshape(4, 4)
    if not len(points):
        return []
    clip = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ matrix.T
    w = clip[:, 3]
    visible = np.isfinite(clip).all(axis=1) & (w > near)
    safe = np.where(visible, w, 1.0)
    ndc = clip[:, :2] / safe[:, None]
    screen = np.stack([(ndc[:, 0] + 1.0) * 0.5 * aspect, (1.0 - ndc[:, 1]) * 0.5], axis=1)
    pieces, start = [], None
    for i, seen in enumerate(visible):
        if seen and start is None:
            start = i
        elif not seen and start is not None:
            pieces.append(screen[start:i])
            start = None
    if start is not None:
        pieces.append(screen[start:])
    return pieces


def thin(line: np.ndarray, keep: int) -> np.ndarray:
    """At most `keep` (>= 2) points of a polyline, evenly spaced by index, its first and last kept."""
    if len(line) <= keep:
        return line
    index = np.unique(np.rint(np.linspace(0, len(line) - 1, max(keep, 2))).astype(int))
    return line[index]


def fit_unit_square(lines: Sequence[np.ndarray], margin: float = MARGIN) -> list[list[list[float]]]:
    """2D polylines (any units, y down) -> the same drawing in [margin, 1 - margin]², proportions kept, centred.

    Non-finite points are dropped; repeated points in a row are merged; a drawing with no extent (one dot) lands
    in the middle. Returns plain lists, ready for JSON: [[[x, y], ...], ...]."""
    clean = []
    for line in lines:
        line = np.asarray(line, dtype=np.float64).reshape(-1, 2)
        line = line[np.isfinite(line).all(axis=1)]
        if len(line) > 1:
            moved = np.ones(len(line), bool)
            moved[1:] = np.abs(np.diff(line, axis=0)).max(axis=1) > 1e-12
            line = line[moved]
        if len(line):
            clean.append(line)
    if not clean:
        return []
    everything = np.concatenate(clean)
    low, high = everything.min(axis=0), everything.max(axis=0)
    extent = float((high - low).max())
    span = 1.0 - 2.0 * margin
    scale = span / extent if extent > 0 else 0.0
    centre = (low + high) / 2.0
    out = []
    for line in clean:
        fitted = np.clip((line - centre) * scale + 0.5, 0.0, 1.0)
        out.append([[round(float(x), DECIMALS), round(float(y), DECIMALS)] for x, y in fitted])
    return out


def limit(lines: Sequence[np.ndarray], max_strokes: int = MAX_STROKES,
          max_points: int = MAX_POINTS) -> list[np.ndarray]:
    """At most `max_strokes` polylines (the ones with the most points, in their original order) and at most
    `max_points` points over all of them (each line thinned in proportion, at least 2 points per line kept)."""
    lines = [np.asarray(line, dtype=np.float64) for line in lines if len(line)]
    if len(lines) > max_strokes:
        keep = sorted(sorted(range(len(lines)), key=lambda i: -len(lines[i]))[:max_strokes])
        lines = [lines[i] for i in keep]
    total = sum(len(line) for line in lines)
    if total > max_points:
        share = max_points / total
        lines = [thin(line, max(2, int(len(line) * share))) for line in lines]
    return lines


def strokes_param(lines: Iterable[np.ndarray], what: str = "the sketch") -> list[list[list[float]]]:
    """2D polylines (view units, y down: what `project` returns) -> the search job's `strokes`
    param: limited (`limit`), fitted into [0, 1]² (`fit_unit_square`). AddonError (code "empty_sketch") when no
    point is left, e.g. no strokes were drawn or all of them lie behind the view."""
    fitted = fit_unit_square(limit(list(lines)))
    if not fitted:
        raise AddonError(f"{what} has no strokes", NO_STROKES_HINT, code="empty_sketch")
    return fitted


def project_strokes(polylines: Iterable[np.ndarray], matrix: np.ndarray, aspect: float = 1.0,
                    what: str = "the sketch") -> list[list[list[float]]]:
    """World-space polylines ([N, 3] each) seen through `matrix` -> the search job's `strokes` param."""
    pieces = []
    for line in polylines:
        pieces.extend(project(line, matrix, aspect))
    return strokes_param(pieces, what)
