"""Tiny deterministic meshes for tests and examples.

All are centred at the origin in the glTF frame (Y up), with counter-clockwise faces seen from
outside (outward normals). No randomness: the same call returns the same arrays every time.
"""

from __future__ import annotations

import numpy as np

from backend.geometry.mesh import Mesh

# The six faces of a cube as corner sign triples, each listed counter-clockwise seen from outside,
# starting at the corner that is bottom-left when the face is viewed upright (sides: +Y up; top: -Z
# up; bottom: +Z up), so a texture cell mapped BL, BR, TR, TL appears upright.
_CUBE_QUADS = (
    ((1, -1, 1), (1, -1, -1), (1, 1, -1), (1, 1, 1)),  # +X
    ((-1, -1, -1), (-1, -1, 1), (-1, 1, 1), (-1, 1, -1)),  # -X
    ((-1, 1, 1), (1, 1, 1), (1, 1, -1), (-1, 1, -1)),  # +Y
    ((-1, -1, -1), (1, -1, -1), (1, -1, 1), (-1, -1, 1)),  # -Y
    ((-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1)),  # +Z
    ((1, -1, -1), (-1, -1, -1), (-1, 1, -1), (1, 1, -1)),  # -Z
)
CUBE_FACE_COLORS = np.array(
    [[230, 60, 50], [60, 180, 75], [50, 100, 220], [250, 200, 40], [160, 60, 200], [40, 200, 210]], dtype=np.uint8
)
"""[6, 3] uint8 colour of each cube face's texture cell in `textured_cube` (order +X -X +Y -Y +Z -Z)."""


def _corner_index(signs) -> int:
    x, y, z = (s > 0 for s in signs)
    return 4 * x + 2 * y + z


def cube(size: float = 1.0) -> Mesh:
    """An axis-aligned cube of side `size` centred at 0, spanning [-size/2, size/2]^3.

    8 shared vertices, 12 triangles, no UVs (the default side 1 gives the unit cube in [-0.5, 0.5]^3).
    Vertex i has corner signs (x, y, z) = bits (4, 2, 1) of i: 0 is (-,-,-), 7 is (+,+,+).
    """
    half = 0.5 * float(size)
    signs = np.array([[(i >> 2) & 1, (i >> 1) & 1, i & 1] for i in range(8)], dtype=np.float32) * 2 - 1
    faces = []
    for quad in _CUBE_QUADS:
        bl, br, tr, tl = (_corner_index(c) for c in quad)
        faces += [(bl, br, tr), (bl, tr, tl)]
    return Mesh(vertices=signs * half, faces=np.array(faces, dtype=np.int32), name="cube")


def textured_cube(size: float = 1.0, cell: int = 8) -> Mesh:
    """`cube(size)` with per-face UVs into a 4x2-cell atlas texture, one flat colour per face.

    24 vertices (4 per face, so UV seams are real splits), 12 triangles. Face k (order +X -X +Y -Y +Z
    -Z) maps upright onto atlas cell (column k % 4, row k // 4, row 0 at the top) of a
    [2*cell, 4*cell, 3] uint8 texture (power-of-two sides for the default cell=8) coloured
    CUBE_FACE_COLORS[k]; the two spare cells are mid grey. UVs follow glTF: (0, 0) top-left.
    metadata["source_vertex"] maps each vertex to its corner in `cube()`.
    """
    half = 0.5 * float(size)
    vertices, uv, faces, source = [], [], [], []
    # Cell corners BL, BR, TR, TL in glTF UV space (v grows downwards).
    unit_uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], dtype=np.float32)
    texture = np.full((2 * cell, 4 * cell, 3), 128, dtype=np.uint8)
    for k, quad in enumerate(_CUBE_QUADS):
        col, row = k % 4, k // 4
        texture[row * cell:(row + 1) * cell, col * cell:(col + 1) * cell] = CUBE_FACE_COLORS[k]
        # Inset by half a texel so bilinear lookups at the edges stay inside the cell.
        inset = 0.5 / cell
        cell_uv = inset + unit_uv * (1 - 2 * inset)
        base = len(vertices)
        for corner, corner_uv in zip(quad, cell_uv):
            vertices.append(np.array(corner, dtype=np.float32) * half)
            uv.append([(col + corner_uv[0]) / 4.0, (row + corner_uv[1]) / 2.0])
            source.append(_corner_index(corner))
        faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    return Mesh(
        vertices=np.array(vertices, dtype=np.float32),
        faces=np.array(faces, dtype=np.int32),
        uv=np.array(uv, dtype=np.float32),
        texture=texture,
        name="textured_cube",
        metadata={"source_vertex": np.array(source, dtype=np.int32)},
    )


def tetrahedron() -> Mesh:
    """A regular tetrahedron with its 4 vertices on the unit sphere, 4 triangles."""
    vertices = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=np.float32) / np.sqrt(3.0)
    faces = np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]], dtype=np.int32)
    return Mesh(vertices=vertices.astype(np.float32), faces=faces, name="tetrahedron")


def icosphere(subdivisions: int = 1, radius: float = 1.0) -> Mesh:
    """A geodesic sphere: an icosahedron whose triangles are split in four `subdivisions` times.

    Vertices: 10 * 4**s + 2, triangles: 20 * 4**s, all vertices at distance `radius` from 0.
    """
    if subdivisions < 0:
        raise ValueError(f"subdivisions must be >= 0, got {subdivisions}")
    t = (1.0 + 5.0**0.5) / 2.0
    vertices = [
        (-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0),
        (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
        (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1),
    ]
    faces = [
        (0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11),
        (1, 5, 9), (5, 11, 4), (11, 10, 2), (10, 7, 6), (7, 1, 8),
        (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9),
        (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1),
    ]
    points = [np.array(v, dtype=np.float64) / np.linalg.norm(v) for v in vertices]
    for _ in range(subdivisions):
        midpoint: dict[tuple[int, int], int] = {}

        def middle(a: int, b: int) -> int:
            key = (a, b) if a < b else (b, a)
            if key not in midpoint:
                m = points[a] + points[b]
                points.append(m / np.linalg.norm(m))
                midpoint[key] = len(points) - 1
            return midpoint[key]

        split = []
        for a, b, c in faces:
            ab, bc, ca = middle(a, b), middle(b, c), middle(c, a)
            split += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = split
    return Mesh(
        vertices=(np.array(points) * radius).astype(np.float32),
        faces=np.array(faces, dtype=np.int32),
        name=f"icosphere{subdivisions}",
    )
