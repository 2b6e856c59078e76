"""A self-contained GLB (binary glTF 2.0) writer, and a minimal reader of what it writes.

Written by hand (struct + json) rather than through trimesh's exporter so the output is exactly
what Blender's importer needs: float vertex colours, a material that uses them, morph targets with
names (imported as shape keys), and nothing else.

Layout (glTF 2.0 spec, "Binary glTF Layout" and "Buffers and Buffer Views"):
- 12-byte header: magic "glTF", version 2, total length; then a JSON chunk padded with spaces and a
  BIN chunk padded with zeros, both to 4 bytes.
- One buffer (the BIN chunk). One buffer view per accessor, each starting on a 4-byte boundary,
  tightly packed (no byteStride), with target ARRAY_BUFFER for vertex data and ELEMENT_ARRAY_BUFFER
  for indices; the PNG image has a view without target.
- POSITION accessors, including the morph-target ones, carry min and max (the spec requires both).
- NORMAL is unit length (area-weighted vertex normals). Morph targets only move positions; importers
  recompute the normals of a deformed shape.
The mesh must already be in glTF's frame (Y up, metres): nothing is converted here.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from backend.errors import InvalidInputError
from backend.geometry.png import encode_png
from backend.geometry.mesh import Mesh
from backend.geometry.normals import vertex_normals
from backend.geometry.validate import check_mesh_arrays

GLB_MAGIC = 0x46546C67  # b"glTF" little-endian
GLB_VERSION = 2
CHUNK_JSON = 0x4E4F534A  # b"JSON"
CHUNK_BIN = 0x004E4942  # b"BIN\0"

# glTF enums (spec, accessor.componentType, bufferView.target, sampler filters and wrap modes).
FLOAT = 5126
UNSIGNED_INT = 5125
ARRAY_BUFFER = 34962
ELEMENT_ARRAY_BUFFER = 34963
TRIANGLES = 4
LINEAR = 9729
LINEAR_MIPMAP_LINEAR = 9987
REPEAT = 10497

_TYPE_BY_WIDTH = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4"}
_WIDTH_BY_TYPE = {v: k for k, v in _TYPE_BY_WIDTH.items()}
_DTYPE_BY_COMPONENT = {FLOAT: np.float32, UNSIGNED_INT: np.uint32, 5123: np.uint16, 5121: np.uint8}

GENERATOR = "Atelier"


class _BinaryBuilder:
    """Accumulates the BIN chunk, its buffer views and accessors."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.buffer_views: list[dict] = []
        self.accessors: list[dict] = []

    def add_view(self, data: bytes, target: int | None) -> int:
        # Every view starts on a 4-byte boundary: float and uint32 accessors need it, and the spec
        # requires vertex attribute elements to be 4-byte aligned.
        self.blob.extend(b"\x00" * (-len(self.blob) % 4))
        view = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.blob.extend(data)
        self.buffer_views.append(view)
        return len(self.buffer_views) - 1

    def add_accessor(self, array: np.ndarray, component: int, target: int, with_bounds: bool = False) -> int:
        """array: [count, width] (or [count] for SCALAR) of the numpy type of `component`."""
        data = np.ascontiguousarray(array, dtype=_DTYPE_BY_COMPONENT[component])
        width = 1 if data.ndim == 1 else data.shape[1]
        accessor = {
            "bufferView": self.add_view(data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes(), target),
            "componentType": component,
            "count": int(data.shape[0]),
            "type": _TYPE_BY_WIDTH[width],
        }
        if with_bounds:
            flat = data.reshape(data.shape[0], -1)
            # float() of a float32 is exact, so the JSON bounds equal the stored values bit for bit.
            accessor["min"] = [float(x) for x in flat.min(axis=0)]
            accessor["max"] = [float(x) for x in flat.max(axis=0)]
        self.accessors.append(accessor)
        return len(self.accessors) - 1


def export_glb(
    mesh: Mesh,
    path: str | Path | None = None,
    *,
    morph_targets: dict[str, np.ndarray] | None = None,
    normals: bool = True,
    name: str | None = None,
) -> bytes:
    """Encode a mesh as GLB bytes, and write them to `path` when given.

    mesh: vertices [N, 3] in glTF's frame, faces [F, 3], optional uv [N, 2] (glTF convention),
    vertex_colors [N, 3|4] linear (written as COLOR_0 float VEC3/VEC4), texture [H, W, 3|4] uint8
    (embedded as PNG and used as baseColorTexture; needs uv). The material's baseColorFactor is
    white, so vertex colours and the texture show as they are (glTF multiplies them by it).
    morph_targets: {shape-key name: [N, 3] float32 position *deltas*}, in insertion order; written as
    POSITION targets with default weight 0 and their names in mesh.extras.targetNames.
    normals: write smooth area-weighted NORMALs; False leaves them to the importer (flat shading).
    name: node and mesh name (Blender names the object after it); default mesh.name or "mesh".
    Raises InvalidInputError for a malformed mesh or morph target, or an unwritable path.
    """
    mesh = check_mesh_arrays(mesh)
    name = name or mesh.name or "mesh"
    targets = _check_morph_targets(morph_targets, mesh.num_vertices)
    builder = _BinaryBuilder()

    attributes = {"POSITION": builder.add_accessor(mesh.vertices, FLOAT, ARRAY_BUFFER, with_bounds=True)}
    if normals:
        attributes["NORMAL"] = builder.add_accessor(vertex_normals(mesh.vertices, mesh.faces), FLOAT, ARRAY_BUFFER)
    if mesh.uv is not None:
        attributes["TEXCOORD_0"] = builder.add_accessor(mesh.uv, FLOAT, ARRAY_BUFFER)
    if mesh.vertex_colors is not None:
        attributes["COLOR_0"] = builder.add_accessor(mesh.vertex_colors, FLOAT, ARRAY_BUFFER)
    indices = builder.add_accessor(mesh.faces.reshape(-1).astype(np.uint32), UNSIGNED_INT, ELEMENT_ARRAY_BUFFER)

    primitive: dict = {"attributes": attributes, "indices": indices, "material": 0, "mode": TRIANGLES}
    gltf_mesh: dict = {"name": name, "primitives": [primitive]}
    if targets:
        primitive["targets"] = [
            {"POSITION": builder.add_accessor(delta, FLOAT, ARRAY_BUFFER, with_bounds=True)}
            for delta in targets.values()
        ]
        gltf_mesh["weights"] = [0.0] * len(targets)
        # Not in the core spec but the de-facto convention; Blender's importer names shape keys from it.
        gltf_mesh["extras"] = {"targetNames": list(targets)}

    gltf: dict = {
        "asset": {"version": "2.0", "generator": GENERATOR},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"name": name, "mesh": 0}],
        "meshes": [gltf_mesh],
        "materials": [_material(mesh, name)],
    }
    if mesh.texture is not None:
        image_view = builder.add_view(encode_png(mesh.texture), target=None)
        gltf["images"] = [{"bufferView": image_view, "mimeType": "image/png"}]
        gltf["samplers"] = [{"magFilter": LINEAR, "minFilter": LINEAR_MIPMAP_LINEAR, "wrapS": REPEAT, "wrapT": REPEAT}]
        gltf["textures"] = [{"sampler": 0, "source": 0}]
    builder.blob.extend(b"\x00" * (-len(builder.blob) % 4))
    gltf["buffers"] = [{"byteLength": len(builder.blob)}]
    gltf["bufferViews"] = builder.buffer_views
    gltf["accessors"] = builder.accessors

    data = _pack_glb(gltf, bytes(builder.blob))
    if path is not None:
        try:
            Path(path).write_bytes(data)
        except OSError as exc:
            raise InvalidInputError(
                f"cannot write {path}: {exc.strerror or exc}", "check that the folder exists and is writable"
            ) from exc
    return data


def _material(mesh: Mesh, name: str) -> dict:
    pbr: dict = {"baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0, "roughnessFactor": 1.0}
    if mesh.texture is not None:
        pbr["baseColorTexture"] = {"index": 0, "texCoord": 0}
    material = {"name": f"{name}_material", "pbrMetallicRoughness": pbr}
    texture, colors = mesh.texture, mesh.vertex_colors
    transparent_texture = texture is not None and texture.shape[2] == 4 and bool(np.any(texture[:, :, 3] < 255))
    transparent_colors = colors is not None and colors.shape[1] == 4 and bool(np.any(colors[:, 3] < 1.0))
    if transparent_texture or transparent_colors:
        material["alphaMode"] = "BLEND"
    return material


def _check_morph_targets(morph_targets: dict[str, np.ndarray] | None, num_vertices: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, delta in (morph_targets or {}).items():
        if not isinstance(key, str) or not key:
            raise InvalidInputError(
                f"morph target names must be non-empty strings, got {key!r}", "name every shape key"
            )
        array = np.asarray(delta)
        if array.dtype.kind not in "fiu" or array.shape != (num_vertices, 3):
            raise InvalidInputError(
                f"morph target '{key}' must be a ({num_vertices}, 3) float array of position deltas, "
                f"got {array.dtype} {tuple(array.shape)}",
                "give one (dx, dy, dz) offset per vertex of the exported mesh",
            )
        array = np.ascontiguousarray(array, dtype=np.float32)
        if not np.all(np.isfinite(array)):
            raise InvalidInputError(
                f"morph target '{key}' contains NaN or infinite values", "check the deformation that produced it"
            )
        out[key] = array
    return out


def _pack_glb(gltf: dict, binary: bytes) -> bytes:
    text = json.dumps(gltf, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 4)  # the spec pads the JSON chunk with spaces
    binary += b"\x00" * (-len(binary) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join([
        struct.pack("<III", GLB_MAGIC, GLB_VERSION, total),
        struct.pack("<II", len(text), CHUNK_JSON), text,
        struct.pack("<II", len(binary), CHUNK_BIN), binary,
    ])


def read_glb(data: bytes) -> tuple[dict, bytes]:
    """Split GLB bytes into (the JSON document, the BIN chunk). Raises InvalidInputError if malformed."""
    hint = "the data is not a GLB file; export it again as glTF Binary (.glb)"
    if len(data) < 20:
        raise InvalidInputError(f"GLB data is too short ({len(data)} bytes)", hint)
    magic, version, total = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC or version != GLB_VERSION or total != len(data):
        raise InvalidInputError(
            f"bad GLB header (magic {magic:#x}, version {version}, length {total} of {len(data)})", hint
        )
    offset, document, binary = 12, None, b""
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from("<II", data, offset)
        chunk = data[offset + 8: offset + 8 + length]
        if kind == CHUNK_JSON:
            document = json.loads(chunk.decode("utf-8"))
        elif kind == CHUNK_BIN:
            binary = chunk
        offset += 8 + length
    if document is None:
        raise InvalidInputError("GLB data has no JSON chunk", hint)
    return document, binary


def read_accessor(document: dict, binary: bytes, index: int) -> np.ndarray:
    """One accessor of a GLB from `read_glb`, as [count, width] (SCALAR: [count]); tightly packed views only."""
    accessor = document["accessors"][index]
    view = document["bufferViews"][accessor["bufferView"]]
    dtype = np.dtype(_DTYPE_BY_COMPONENT[accessor["componentType"]]).newbyteorder("<")
    width = _WIDTH_BY_TYPE[accessor["type"]]
    start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
    array = np.frombuffer(binary, dtype=dtype, count=accessor["count"] * width, offset=start)
    return array if width == 1 else array.reshape(accessor["count"], width)
