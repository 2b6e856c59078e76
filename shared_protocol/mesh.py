"""`MeshPayload`: a triangle mesh as it travels in `submit` (and may travel back in results).

Frame and conventions are Blender's, so the add-on sends what it reads without conversion:
positions in the object's local space (Z up), UVs with (0, 0) at the bottom-left of the image,
colours linear in [0, 1]. The backend converts at the job boundary (`backend/server/meshes.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shared_protocol.arrays import Array
from shared_protocol.errors import ProtocolError
from shared_protocol.fields import HeaderReader, HeaderWriter
from shared_protocol.limits import MAX_FACES, MAX_VERTICES, PNG_SIGNATURE

IDENTITY = (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
UV_DOMAINS = ("vertex", "corner")
_FIELDS = ("vertices", "faces", "uv", "uv_domain", "vertex_colors", "texture", "transform")


@dataclass
class MeshPayload:
    """A triangle mesh in Blender object-local space; validated on construction (raises `ProtocolError`)."""

    vertices: Array
    """(N, 3) float32 positions, object-local, Z up. N <= MAX_VERTICES."""
    faces: Array
    """(F, 3) int32 vertex indices, counter-clockwise seen from outside. F <= MAX_FACES."""
    uv: Array | None = None
    """(N, 2) per-vertex or (3F, 2) per-corner float32 UVs, Blender convention: (0, 0) is bottom-left."""
    uv_domain: str = "auto"
    """"vertex" | "corner" | "auto" (by row count: N -> vertex, else 3F -> corner). Blender's UV layers
    are per corner: say "corner" so a mesh with N == 3F is not misread."""
    vertex_colors: Array | None = None
    """(N, 3 or 4) float32 linear colours in [0, 1]."""
    texture: bytes | None = None
    """Base-colour image as PNG bytes (row 0 at the top, as PNG files are)."""
    transform: tuple[float, ...] = IDENTITY
    """Object-to-world 4x4 matrix, row-major, 16 floats (Blender's `matrix_world`)."""

    def __post_init__(self) -> None:
        self.validate()

    @property
    def num_vertices(self) -> int:
        return self.vertices.shape[0]

    @property
    def num_faces(self) -> int:
        return self.faces.shape[0]

    def validate(self, field: str = "mesh") -> None:
        """Checks dtypes, shapes against each other, limits, the PNG signature and the transform."""
        v = _expect(self.vertices, f"{field}.vertices", "float32", 2)
        if v.shape[1] != 3 or v.shape[0] > MAX_VERTICES:
            raise ProtocolError(f"'{field}.vertices' must have shape (N, 3) with N <= {MAX_VERTICES}, got {v.shape}")
        f = _expect(self.faces, f"{field}.faces", "int32", 2)
        if f.shape[1] != 3 or f.shape[0] > MAX_FACES:
            raise ProtocolError(f"'{field}.faces' must have shape (F, 3) with F <= {MAX_FACES} (triangles only: "
                                f"triangulate first), got {f.shape}")
        n, nf = v.shape[0], f.shape[0]
        if self.uv is None:
            self.uv_domain = "auto"  # nothing to qualify; keeps round trips equal
        else:
            uv = _expect(self.uv, f"{field}.uv", "float32", 2)
            if uv.shape[1] != 2 or uv.shape[0] not in (n, 3 * nf):
                raise ProtocolError(f"'{field}.uv' must have shape (N, 2) = ({n}, 2) or (3F, 2) = ({3 * nf}, 2), "
                                    f"got {uv.shape}")
            if self.uv_domain not in (*UV_DOMAINS, "auto"):
                raise ProtocolError(f"'{field}.uv_domain' must be 'vertex', 'corner' or 'auto', got {self.uv_domain!r}")
            if self.uv_domain == "auto":
                self.uv_domain = "vertex" if uv.shape[0] == n else "corner"
            expected = n if self.uv_domain == "vertex" else 3 * nf
            if uv.shape[0] != expected:
                raise ProtocolError(f"'{field}.uv' is per-{self.uv_domain} so needs {expected} rows, got {uv.shape[0]}")
        if self.vertex_colors is not None:
            c = _expect(self.vertex_colors, f"{field}.vertex_colors", "float32", 2)
            if c.shape[0] != n or c.shape[1] not in (3, 4):
                raise ProtocolError(f"'{field}.vertex_colors' must have shape (N, 3 or 4) with N = {n}, got {c.shape}")
        if self.texture is not None:
            if not isinstance(self.texture, bytes) or not self.texture.startswith(PNG_SIGNATURE):
                raise ProtocolError(f"'{field}.texture' must be PNG bytes (it does not start with the PNG signature)")
        t = self.transform
        if (not isinstance(t, (tuple, list)) or len(t) != 16
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in t)):
            raise ProtocolError(f"'{field}.transform' must be 16 finite numbers (a 4x4 row-major matrix)")
        self.transform = tuple(float(x) for x in t)

    def to_header(self, writer: HeaderWriter, field: str = "mesh") -> dict:
        self.validate(field)
        header = {
            "vertices": writer.array(self.vertices, f"{field}.vertices"),
            "faces": writer.array(self.faces, f"{field}.faces"),
            "transform": list(self.transform),
        }
        if self.uv is not None:
            header["uv"] = writer.array(self.uv, f"{field}.uv")
            header["uv_domain"] = self.uv_domain
        if self.vertex_colors is not None:
            header["vertex_colors"] = writer.array(self.vertex_colors, f"{field}.vertex_colors")
        if self.texture is not None:
            header["texture"] = writer.blob(self.texture, f"{field}.texture")
        return header

    @classmethod
    def from_header(cls, value: object, reader: HeaderReader, field: str = "mesh") -> "MeshPayload":
        if not isinstance(value, dict):
            raise ProtocolError(f"header field '{field}' must be an object with vertices and faces")
        unknown = sorted(set(value) - set(_FIELDS))
        if unknown:
            raise ProtocolError(f"header field '{field}.{unknown[0]:.64}' is not part of a mesh payload")
        for required in ("vertices", "faces"):
            if required not in value:
                raise ProtocolError(f"header field '{field}.{required}' is missing")

        def optional_array(name: str) -> Array | None:
            ref = value.get(name)
            return None if ref is None else reader.array_ref(ref, f"{field}.{name}")

        texture_ref = value.get("texture")
        uv_domain = value.get("uv_domain", "auto")
        if uv_domain not in (*UV_DOMAINS, "auto"):
            raise ProtocolError(f"header field '{field}.uv_domain' must be 'vertex' or 'corner', got {uv_domain!r:.40}")
        return cls(
            vertices=reader.array_ref(value["vertices"], f"{field}.vertices"),
            faces=reader.array_ref(value["faces"], f"{field}.faces"),
            uv=optional_array("uv"),
            uv_domain=uv_domain,
            vertex_colors=optional_array("vertex_colors"),
            texture=None if texture_ref is None else reader.blob_ref(texture_ref, f"{field}.texture", png=True),
            transform=value.get("transform", IDENTITY),
        )


def _expect(arr: object, field: str, dtype: str, ndim: int) -> Array:
    if not isinstance(arr, Array):
        raise ProtocolError(f"'{field}' must be a shared_protocol.Array, got {type(arr).__name__}")
    if arr.dtype != dtype or len(arr.shape) != ndim:
        raise ProtocolError(f"'{field}' must be a {ndim}-D {dtype} array, got {len(arr.shape)}-D {arr.dtype}")
    return arr
