"""Closed parametric parts (boxes, surfaces of revolution, tori) that the shape families are built from.

Every part is a closed, consistently wound surface with outward normals, so a shape is simply the
list of its parts (separate components, no booleans). Parts carry:
- UVs in metres along the surface (boxes: planar per face; lathes: arc length around and along the
  profile; tori: arc lengths), so a tileable pattern keeps its scale from part to part. `assemble`
  rescales them to pattern periods once the size of the whole shape is known.
- Smooth normals computed analytically, so the UV seam of a round part does not show in the shading
  (the renderer's own area-weighted normals would see the seam duplicates as a crease).

Positions are float64 in metres while building, glTF frame (Y up, front = +Z).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Part:
    """One closed component of a shape."""

    vertices: np.ndarray
    """[n, 3] float64 positions in metres."""
    faces: np.ndarray
    """[f, 3] int64 indices into `vertices`, counter-clockwise seen from outside."""
    uv: np.ndarray
    """[n, 2] float64 surface coordinates in metres (v grows downwards on upright faces)."""
    normals: np.ndarray
    """[n, 3] float64 unit shading normals (outward)."""
    name: str = ""
    """What the part is ("seat", "leg", "shade", ...)."""

    def transformed(self, matrix: np.ndarray | None = None, offset=(0.0, 0.0, 0.0)) -> "Part":
        """A copy mapped by p -> matrix @ p + offset (matrix [3, 3], any invertible; normals follow)."""
        vertices, normals, faces = self.vertices, self.normals, self.faces
        if matrix is not None:
            matrix = np.asarray(matrix, dtype=np.float64)
            vertices = vertices @ matrix.T
            normals = normals @ np.linalg.inv(matrix)  # inverse-transpose, applied to row vectors
            normals = normals / np.linalg.norm(normals, axis=1, keepdims=True)
            if np.linalg.det(matrix) < 0:  # a mirror turns the winding inside out
                faces = faces[:, ::-1].copy()
        return Part(vertices + np.asarray(offset, dtype=np.float64), faces, self.uv.copy(), normals, self.name)


def rotation(axis: str, degrees: float) -> np.ndarray:
    """[3, 3] float64 rotation by `degrees` (right-handed) about world axis "x", "y" or "z"."""
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    if axis == "z":
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    raise ValueError(f"axis must be 'x', 'y' or 'z', got {axis!r}")


# Each box face: outward normal, its "right" axis seen from outside (upright: +Y up on the sides).
_BOX_FACES = (
    ((1, 0, 0), (0, 0, -1)),
    ((-1, 0, 0), (0, 0, 1)),
    ((0, 1, 0), (1, 0, 0)),
    ((0, -1, 0), (1, 0, 0)),
    ((0, 0, 1), (1, 0, 0)),
    ((0, 0, -1), (-1, 0, 0)),
)


def box(centre, size, name: str = "box", matrix: np.ndarray | None = None) -> Part:
    """An axis-aligned box of `size` (sx, sy, sz) > 0 at `centre`, optionally turned by `matrix` about its centre.

    24 vertices (4 per face, flat normals), 12 triangles; each face's UV is its planar coordinates
    (right, down) in metres, so vertical faces have v = -y.
    """
    half = 0.5 * np.asarray(size, dtype=np.float64)
    if half.shape != (3,) or np.any(half <= 0):
        raise ValueError(f"box size must be three positive lengths, got {size}")
    vertices, uv, normals, faces = [], [], [], []
    corners = ((-1, -1), (1, -1), (1, 1), (-1, 1))  # BL, BR, TR, TL seen from outside
    for normal, right in _BOX_FACES:
        n, r = np.array(normal, dtype=np.float64), np.array(right, dtype=np.float64)
        up = np.cross(n, r)
        base = len(vertices)
        for a, b in corners:
            p = (n + a * r + b * up) * half
            vertices.append(p)
            uv.append((p @ r, -(p @ up)))
            normals.append(n)
        faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    part = Part(np.array(vertices), np.array(faces, dtype=np.int64), np.array(uv), np.array(normals), name)
    return part.transformed(matrix, centre)


def lathe(profile, segments: int = 24, sharp=(), name: str = "lathe", centre=(0.0, 0.0, 0.0),
          matrix: np.ndarray | None = None) -> Part:
    """A closed surface of revolution about the +Y axis through `centre`.

    profile: [(r, y), ...] in metres, at least 3 points, starting and ending on the axis (r = 0) and
    traced bottom -> outwards -> up -> back to the axis, so the solid lies on the inner side; interior
    points need r > 0. sharp: indices of profile points where the surface creases (their rings are
    duplicated so each side keeps its own normal); elsewhere the normal is smooth.
    UV: u = angle * r (metres around), v = arc length along the profile from its start (metres).
    """
    prof = np.asarray(profile, dtype=np.float64)
    if prof.ndim != 2 or prof.shape[1] != 2 or len(prof) < 3:
        raise ValueError("profile must be a list of at least three (r, y) points")
    if prof[0, 0] != 0 or prof[-1, 0] != 0 or np.any(prof[1:-1, 0] <= 0):
        raise ValueError("profile must start and end on the axis (r = 0) with r > 0 in between")
    if segments < 3:
        raise ValueError(f"segments must be >= 3, got {segments}")
    steps = np.diff(prof, axis=0)
    lengths = np.linalg.norm(steps, axis=1)
    if np.any(lengths <= 0):
        raise ValueError("profile has repeated consecutive points; mark a crease with `sharp` instead")
    arc = np.concatenate([[0.0], np.cumsum(lengths)])
    edge_normals = np.stack([steps[:, 1], -steps[:, 0]], axis=1) / lengths[:, None]  # (n_r, n_y) per edge
    theta = np.linspace(0.0, 2 * np.pi, segments + 1)
    sin, cos = np.sin(theta), np.cos(theta)
    sharp = set(int(i) % len(prof) for i in sharp)

    vertices: list[np.ndarray] = []
    uvs: list[np.ndarray] = []
    normals: list[np.ndarray] = []

    def add(points, uv, normal) -> np.ndarray:
        start = sum(len(v) for v in vertices)
        vertices.append(points)
        uvs.append(uv)
        normals.append(normal)
        return np.arange(start, start + len(points))

    def ring(i: int, normal_2d: np.ndarray) -> np.ndarray:
        r, y = prof[i]
        n2 = normal_2d / np.linalg.norm(normal_2d)
        points = np.stack([r * sin, np.full_like(sin, y), r * cos], axis=1)
        normal = np.stack([n2[0] * sin, np.full_like(sin, n2[1]), n2[0] * cos], axis=1)
        uv = np.stack([theta * r, np.full_like(theta, arc[i])], axis=1)
        return add(points, uv, normal)

    def pole(i: int, normal_2d: np.ndarray) -> np.ndarray:
        # One copy per segment so every fan triangle gets its own UV; positions coincide.
        r, y = prof[i]
        mid = 0.5 * (theta[:-1] + theta[1:])
        points = np.tile([0.0, y, 0.0], (segments, 1))
        normal = np.tile([0.0, np.sign(normal_2d[1]) or 1.0, 0.0], (segments, 1))
        uv = np.stack([mid * 0.0, np.full_like(mid, arc[i])], axis=1)
        return add(points, uv, normal)

    faces = []
    last = len(prof) - 1
    shared: np.ndarray | None = None  # ring carried over a smooth joint
    for e in range(last):
        i, k = e, e + 1
        # Start ring of this edge.
        if i == 0:
            start = pole(i, edge_normals[e])
        elif shared is not None:
            start = shared
        else:
            start = ring(i, edge_normals[e])
        # End ring of this edge; shared with the next edge when the joint is smooth.
        shared = None
        if k == last:
            end = pole(k, edge_normals[e])
        elif k in sharp:
            end = ring(k, edge_normals[e])
        else:
            end = ring(k, edge_normals[e] + edge_normals[e + 1])
            shared = end
        for j in range(segments):
            if i == 0:
                faces.append((start[j], end[j + 1], end[j]))
            elif k == last:
                faces.append((start[j], start[j + 1], end[j]))
            else:
                a, b, c, d = start[j], start[j + 1], end[j + 1], end[j]
                faces += [(a, b, c), (a, c, d)]
    part = Part(np.concatenate(vertices), np.array(faces, dtype=np.int64), np.concatenate(uvs),
                np.concatenate(normals), name)
    return part.transformed(matrix, centre)


def cylinder(centre, radius: float, height: float, segments: int = 16, name: str = "cylinder",
             top_radius: float | None = None, matrix: np.ndarray | None = None) -> Part:
    """A capped cylinder (or frustum with `top_radius`; a cone when it is 0) standing on `centre`.

    `centre` is the centre of the bottom cap; the axis is +Y (turn it with `matrix`, about `centre`).
    """
    top = radius if top_radius is None else top_radius
    if radius <= 0 or height <= 0 or top < 0:
        raise ValueError(f"cylinder needs radius > 0, height > 0, top_radius >= 0; got {radius}, {height}, {top}")
    if top == 0:
        return lathe([(0, 0), (radius, 0), (0, height)], segments, sharp=(1,), name=name, centre=centre,
                     matrix=matrix)
    return lathe([(0, 0), (radius, 0), (top, height), (0, height)], segments, sharp=(1, 2), name=name,
                 centre=centre, matrix=matrix)


def ellipsoid(centre, radii, segments: int = 16, rings: int = 8, name: str = "ellipsoid",
              matrix: np.ndarray | None = None) -> Part:
    """An ellipsoid with semi-axes `radii` (rx, ry, rz) > 0 at `centre` (a scaled lathed sphere)."""
    radii = np.asarray(radii, dtype=np.float64)
    if radii.shape != (3,) or np.any(radii <= 0):
        raise ValueError(f"ellipsoid radii must be three positive lengths, got {radii}")
    phi = np.linspace(-np.pi / 2, np.pi / 2, rings + 1)
    profile = np.stack([np.cos(phi), np.sin(phi)], axis=1)
    profile[0, 0] = profile[-1, 0] = 0.0
    sphere = lathe(profile, segments, name=name)
    scale = np.diag(radii)
    return sphere.transformed(scale if matrix is None else np.asarray(matrix) @ scale, centre)


def torus(centre, major: float, minor: float, segments: int = 24, tube_segments: int = 10,
          name: str = "torus", matrix: np.ndarray | None = None, arc_degrees: float = 360.0,
          start_degrees: float = 0.0) -> Part:
    """A ring torus around the +Y axis (major radius to the tube centre, minor tube radius, major > minor > 0).

    arc_degrees < 360 gives an arc of tube from `start_degrees` (azimuth from +Z toward +X), closed
    with flat caps, e.g. a mug handle. UV: u = angle * major radius, v = tube angle * minor radius (metres).
    """
    if not major > minor > 0:
        raise ValueError(f"torus needs major > minor > 0, got major={major}, minor={minor}")
    if not 0 < arc_degrees <= 360:
        raise ValueError(f"arc_degrees must be in (0, 360], got {arc_degrees}")
    closed = arc_degrees >= 360
    start = np.radians(start_degrees)
    phi = start + np.linspace(0.0, np.radians(arc_degrees), segments + 1)[:, None]  # around the axis
    psi = np.linspace(0.0, 2 * np.pi, tube_segments + 1)[None, :]  # around the tube
    radial = major + minor * np.cos(psi)
    points = np.stack(np.broadcast_arrays(radial * np.sin(phi), minor * np.sin(psi), radial * np.cos(phi)), axis=-1)
    normals = np.stack(np.broadcast_arrays(np.cos(psi) * np.sin(phi), np.sin(psi) + 0 * phi,
                                           np.cos(psi) * np.cos(phi)), axis=-1)
    uv = np.stack(np.broadcast_arrays(phi * major, psi * minor), axis=-1)
    cols = tube_segments + 1
    index = np.arange((segments + 1) * cols).reshape(segments + 1, cols)
    a, b = index[:-1, :-1], index[1:, :-1]
    c, d = index[1:, 1:], index[:-1, 1:]
    faces = [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)]
    vertices, uvs, norms = [points.reshape(-1, 3)], [uv.reshape(-1, 2)], [normals.reshape(-1, 3)]
    if not closed:
        count = len(vertices[0])
        for row, sign in ((0, -1.0), (segments, 1.0)):
            angle = float(phi[row, 0])
            tangent = sign * np.array([np.cos(angle), 0.0, -np.sin(angle)])
            rim = points[row, :-1]
            centre_point = np.array([major * np.sin(angle), 0.0, major * np.cos(angle)])
            vertices.append(np.concatenate([rim, centre_point[None]]))
            offsets = (rim - centre_point) / minor
            uvs.append(np.concatenate([offsets[:, [0, 1]] * minor + [angle * major, 0.0], [[angle * major, 0.0]]]))
            norms.append(np.tile(tangent, (tube_segments + 1, 1)))
            ring = count + np.arange(tube_segments)
            hub = count + tube_segments
            nxt = np.roll(ring, -1)
            fan = np.stack([np.full_like(ring, hub), nxt, ring], -1) if sign > 0 else \
                np.stack([np.full_like(ring, hub), ring, nxt], -1)
            faces.append(fan)
            count += tube_segments + 1
    part = Part(np.concatenate(vertices), np.concatenate(faces), np.concatenate(uvs), np.concatenate(norms), name)
    return part.transformed(matrix, centre)


def beam(start, end, thickness: float, name: str = "beam", round_: bool = False, segments: int = 10) -> Part:
    """A square (or round) bar of side/diameter `thickness` from point `start` to point `end`.

    Used for legs, posts and rails that may lean. The bar's cross-section stays square to world Y
    where it can (its "right" axis is horizontal).
    """
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    axis = end - start
    length = float(np.linalg.norm(axis))
    if length <= 0 or thickness <= 0:
        raise ValueError(f"beam needs distinct end points and thickness > 0, got length {length}, {thickness}")
    y = axis / length
    helper = np.array([0.0, 0.0, 1.0]) if abs(y[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(y, helper)
    x /= np.linalg.norm(x)
    z = np.cross(x, y)
    frame = np.stack([x, y, z], axis=1)  # columns: local x, y (along the bar), z
    if round_:
        return cylinder(start, 0.5 * thickness, length, segments, name=name, matrix=frame)
    return box(start + 0.5 * axis, (thickness, length, thickness), name=name, matrix=frame)


@dataclass
class Assembled:
    """A shape's parts joined into one set of arrays (each part stays a separate closed component)."""

    vertices: np.ndarray
    """[N, 3] float32 positions in metres."""
    faces: np.ndarray
    """[F, 3] int32."""
    uv: np.ndarray
    """[N, 2] float32 pattern coordinates: one texture tile per unit."""
    normals: np.ndarray
    """[N, 3] float32 unit shading normals."""
    part_faces: list[tuple[str, int, int]]
    """(part name, first face, end face) of each part, in order: faces[first:end] belong to it."""


def assemble(parts: list[Part], pattern_period: float, uv_offset=(0.0, 0.0)) -> Assembled:
    """Concatenate parts; UV metres become tiles: uv / pattern_period + uv_offset.

    pattern_period: metres per texture tile (> 0). Vertices are not merged across parts.
    """
    if not parts:
        raise ValueError("a shape needs at least one part")
    if pattern_period <= 0:
        raise ValueError(f"pattern_period must be > 0, got {pattern_period}")
    vertices, faces, uv, normals, ranges = [], [], [], [], []
    n = f = 0
    for part in parts:
        vertices.append(part.vertices)
        faces.append(part.faces + n)
        uv.append(part.uv)
        normals.append(part.normals)
        ranges.append((part.name, f, f + len(part.faces)))
        n += len(part.vertices)
        f += len(part.faces)
    return Assembled(
        vertices=np.concatenate(vertices).astype(np.float32),
        faces=np.concatenate(faces).astype(np.int32),
        uv=(np.concatenate(uv) / pattern_period + np.asarray(uv_offset)).astype(np.float32),
        normals=np.concatenate(normals).astype(np.float32),
        part_faces=ranges,
    )
