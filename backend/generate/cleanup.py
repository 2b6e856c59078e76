"""Clean surfaces after marching cubes: drop floating pieces by their volume, then smooth without shrinking.

Pieces are the connected components of the triangle mesh (by shared vertices). Marching cubes on a grid padded
with empty cells closes every piece, so each piece's enclosed volume is the signed volume of its own faces (the
divergence theorem); a cavity's inner wall comes out negative. Smoothing is Taubin's lambda/mu filter over the
uniform (umbrella) Laplacian: a lambda step shrinks like plain Laplacian smoothing and a negative mu step of
slightly larger size inflates back, so low frequencies (the shape, thin legs included) pass and only the
staircase of the grid is filtered (Taubin, "A signal processing approach to fair surface design", 1995).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

TAUBIN_LAMBDA = 0.5
"""Shrinking step of Taubin smoothing (Taubin's usual value)."""
TAUBIN_MU = -0.53
"""Inflating step: |mu| slightly above lambda puts the pass band at k = 1/lambda + 1/mu ~ 0.11."""


@dataclass
class CleanupReport:
    """What the clean-up did to one decoded surface."""

    pieces: int
    """Connected pieces marching cubes found."""
    pieces_removed: int
    """Pieces dropped for being smaller than the threshold."""
    volume_removed: float
    """Volume of the dropped pieces over the total before clean-up (absolute values: a filled cavity counts too)."""
    largest_floating: float
    """Volume fraction (of what remains) of the largest piece other than the largest one (0 with one piece)."""
    smooth_iterations: int
    """Taubin lambda/mu iteration pairs run (0: smoothing off)."""
    smooth_volume_change: float
    """(volume after smoothing - before) / before: near 0 is what Taubin smoothing promises."""

    def as_dict(self) -> dict:
        return {key: (round(value, 6) if isinstance(value, float) else value) for key, value in asdict(self).items()}


def face_pieces(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, int]:
    """(piece label of every face [F], piece count): connected components by shared vertices."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(vertices)
    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # Renumber over the faces only, so unused vertices do not count as pieces.
    used, face_label = np.unique(labels[faces[:, 0]], return_inverse=True)
    return face_label.reshape(-1), len(used)


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Enclosed volume of a closed surface, positive when its faces wind counter-clockwise from outside."""
    return float(_face_volumes(vertices, faces).sum())


def piece_volumes(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(piece label of every face [F], signed volume of every piece [P] float64)."""
    labels, count = face_pieces(vertices, faces)
    return labels, np.bincount(labels, weights=_face_volumes(vertices, faces), minlength=count)


def floating_fractions(mesh) -> list[float]:
    """Volume fraction (of the whole) of every piece but the largest, largest first: [] for a single piece.

    Works on any closed mesh (a `Mesh` or anything with `vertices` and `faces`); cavities (inner walls, negative
    volume) are not floating pieces and are left out."""
    return _floating(np.asarray(mesh.vertices), np.asarray(mesh.faces))


def _floating(vertices: np.ndarray, faces: np.ndarray) -> list[float]:
    if len(faces) == 0:
        return []
    _, volumes = piece_volumes(vertices, faces)
    total = volumes.sum()
    if total <= 0:
        return []
    solids = np.sort(volumes[volumes > 0])[::-1]
    return [float(v / total) for v in solids[1:]]


def drop_small_pieces(vertices: np.ndarray, faces: np.ndarray, fraction: float, only_largest: bool = False):
    """Drops pieces whose |volume| is below `fraction` of the total volume (`only_largest`: every piece but the
    largest, whatever its size; an enclosed cavity's wall goes too, which fills it), and the vertices they leave
    unused. Faces must wind outward overall (positive total volume). Returns (vertices, faces int32, pieces found,
    pieces removed, volume removed as a fraction of the total). The largest piece is always kept."""
    labels, volumes = piece_volumes(vertices, faces)
    total = max(float(volumes.sum()), 1e-30)
    keep = np.abs(volumes) >= fraction * total if not only_largest else np.zeros(len(volumes), bool)
    keep[np.argmax(volumes)] = True
    removed = float(np.abs(volumes[~keep]).sum() / total)
    faces = faces[keep[labels]]
    used = np.unique(faces)
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return vertices[used], remap[faces].astype(np.int32), len(volumes), int((~keep).sum()), removed


def umbrella_operator(faces: np.ndarray, count: int):
    """The uniform Laplacian's averaging matrix W (sparse [N, N]): (W @ v)[i] is the mean of i's edge neighbours."""
    from scipy.sparse import coo_matrix, diags

    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 1], faces[:, 2], faces[:, 0]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0], faces[:, 0], faces[:, 1], faces[:, 2]])
    adjacency = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(count, count)).tocsr()
    adjacency.data[:] = 1.0  # each edge is in two faces: count it once
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    return diags(1.0 / np.maximum(degree, 1.0)) @ adjacency


def laplacian_smooth(vertices: np.ndarray, faces: np.ndarray, iterations: int, lam: float = TAUBIN_LAMBDA,
                     mu: float | None = TAUBIN_MU) -> np.ndarray:
    """`iterations` rounds of v += lam * (W v - v), each followed by the same with `mu` (Taubin) unless mu is None
    (plain Laplacian smoothing, which shrinks). Returns new float32 vertices; connectivity is unchanged."""
    if iterations <= 0 or len(faces) == 0:
        return vertices
    average = umbrella_operator(faces, len(vertices))
    v = vertices.astype(np.float64)
    steps = (lam,) if mu is None else (lam, mu)
    for _ in range(iterations):
        for step in steps:
            v += step * (average @ v - v)
    return v.astype(np.float32)


def clean_surface(vertices: np.ndarray, faces: np.ndarray, min_piece_fraction: float,
                  smooth_iterations: int, only_largest: bool = False) -> tuple[np.ndarray, np.ndarray, CleanupReport]:
    """Drop floating pieces (below `min_piece_fraction` of the volume, or all but the largest), then Taubin-smooth:
    (vertices float32, faces int32, report). Faces must wind outward."""
    vertices, faces, pieces, removed, volume_removed = drop_small_pieces(vertices, faces, min_piece_fraction,
                                                                         only_largest)
    before = signed_volume(vertices, faces)
    if smooth_iterations:
        smoothed = laplacian_smooth(vertices, faces, smooth_iterations)
        # The mu steps may push a corner a hair past where the grid put it; stay inside the raw surface's box
        # so the shape never leaves the cube [-1, 1]^3 it was decoded in.
        vertices = np.clip(smoothed, vertices.min(axis=0), vertices.max(axis=0))
    after = signed_volume(vertices, faces)
    floating = _floating(vertices, faces)
    report = CleanupReport(pieces=pieces, pieces_removed=removed, volume_removed=volume_removed,
                           largest_floating=floating[0] if floating else 0.0, smooth_iterations=smooth_iterations,
                           smooth_volume_change=(after - before) / before if before > 0 else 0.0)
    return vertices, faces, report


def _face_volumes(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    a, b, c = (vertices.astype(np.float64)[faces[:, k]] for k in range(3))
    return np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0


# ----------------------------------------------------------------------------------------------- bridging


@dataclass
class BridgeReport:
    """What bridging did to one logit grid before marching cubes."""

    pieces: int
    """Occupied pieces of the grid (6-connected cells above the level) of at least the minimum size."""
    bridged: int
    """Pieces joined to the largest one by a strut."""
    strut_cells: int
    """Cells raised above the level to make the struts."""
    weakest: float
    """Lowest occupancy probability a strut passed through (1.0 when nothing was bridged)."""


def _labels(mask: np.ndarray) -> tuple[np.ndarray, int]:
    from scipy import ndimage

    return ndimage.label(mask)  # 6-connected in 3D: conservative, never misses a gap marching cubes could open


def _strut(mask: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Cells of a shortest 6-connected path inside `mask` from `source` to `target` (boolean grids, connected
    within mask): breadth-first distances from target by constrained dilation, then steepest descent from the
    source cell nearest the target."""
    from scipy import ndimage

    distance = np.full(mask.shape, -1, np.int32)
    reached = target.copy()
    distance[reached] = 0
    step = 0
    while not (reached & source).any():
        step += 1
        frontier = ndimage.binary_dilation(reached) & mask & ~reached
        if not frontier.any():
            return np.zeros_like(mask)
        distance[frontier] = step
        reached |= frontier
    path = np.zeros_like(mask)
    cell = np.argwhere(source & reached)[0]
    offsets = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
    while distance[tuple(cell)] > 0:
        path[tuple(cell)] = True
        for offset in offsets:
            near = cell + offset
            if (near >= 0).all() and (near < mask.shape).all() and distance[tuple(near)] == distance[tuple(cell)] - 1:
                cell = near
                break
    return path


def bridge_pieces(logits: np.ndarray, level: float, floor: float, min_fraction: float,
                  lift: float = 1.0) -> tuple[np.ndarray, BridgeReport]:
    """Joins the grid's detached pieces to its largest one where the decoder's field nearly does.

    A thin part (a chair leg, a lamp's stem) that the field keeps just under the level at a joint comes out of
    marching cubes as a floating piece. For every piece of at least `min_fraction` of the occupied cells: find the
    highest level, on a ladder down to the logit `floor`, at which it is connected to the largest piece; raise
    the cells of a shortest path between them at that level, and their 6 neighbours, to `level + lift` (a strut
    three cells thick, following the field's ridge). Pieces that stay detached down to `floor` are left alone
    (the clean-up drops them when small). Returns (the new logits, report); the input is not changed.
    """
    from scipy import ndimage

    occupied = logits > level
    labels, count = _labels(occupied)
    if count < 2:
        return logits, BridgeReport(pieces=count, bridged=0, strut_cells=0, weakest=1.0)
    sizes = np.bincount(labels.ravel())[1:]
    main = int(np.argmax(sizes)) + 1
    pieces = [index + 1 for index in np.argsort(-sizes) if sizes[index] >= min_fraction * sizes.sum()]
    out, bridged, weakest = logits.copy(), 0, level
    struts = np.zeros_like(occupied)
    ladder = np.linspace(level, floor, 9)[1:]
    rungs: dict[float, np.ndarray] = {}  # each rung's labels, computed once for all pieces
    for piece in pieces:
        if piece == main:
            continue
        for rung in ladder:
            if rung not in rungs:
                rungs[rung] = _labels(logits > rung)[0]
            low = rungs[rung]
            joined = low[labels == main][0]
            if (low[labels == piece] == joined).any():
                path = _strut(low == joined, labels == piece, labels == main)
                if path.any():
                    struts |= ndimage.binary_dilation(path)
                    bridged += 1
                    weakest = min(weakest, float(rung))
                break
    out[struts] = np.maximum(out[struts], level + lift)
    return out, BridgeReport(pieces=len(pieces), bridged=bridged, strut_cells=int(struts.sum()),
                             weakest=1.0 if not bridged else float(1.0 / (1.0 + np.exp(-weakest))))
