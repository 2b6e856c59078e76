"""Mesh and image packing with numpy only (no bpy): Blender's flat buffers -> protocol payloads.

`meshio.py` reads the buffers out of Blender with `foreach_get`; everything that can be checked without
Blender lives here and is unit-tested.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from .errors import AddonError
from .protocol import Array, MeshPayload, ProtocolError, limits


def to_array(values: np.ndarray, dtype: str) -> Array:
    """A C-contiguous numpy array -> protocol `Array` (float32 / int32 / uint8)."""
    values = np.ascontiguousarray(values, dtype={"float32": np.float32, "int32": np.int32, "uint8": np.uint8}[dtype])
    return Array.from_buffer(values.tobytes(), dtype, values.shape)


def from_array(array: Array) -> np.ndarray:
    """Protocol `Array` -> numpy array of its shape (a copy)."""
    dtype = {"float32": "<f4", "int32": "<i4", "uint8": "u1"}[array.dtype]
    return np.frombuffer(array.data, dtype=dtype).reshape(array.shape).copy()


def check_size(name: str, n_vertices: int, n_triangles: int) -> None:
    """AddonError (code "too_large") when a mesh is over the protocol's vertex or triangle limit. The add-on's one
    size check: `meshio.mesh_payload` calls it on Blender's counts before copying any array."""
    if n_vertices > limits.MAX_VERTICES or n_triangles > limits.MAX_FACES:
        raise AddonError(f"'{name}' has {n_vertices} vertices and {n_triangles} triangles (modifiers applied), over "
                         f"the limits ({limits.MAX_VERTICES} / {limits.MAX_FACES})",
                         "lower the subdivision levels or decimate it", code="too_large")


def pack_mesh(name: str, vertices: np.ndarray, triangles: np.ndarray, corner_uv: np.ndarray | None = None,
              texture_png: bytes | None = None, matrix_world=None) -> MeshPayload:
    """A triangulated mesh as a `MeshPayload`; AddonError naming `name` for what a job cannot use.

    vertices: [N, 3] float32 object-local (Z up); triangles: [T, 3] int32 vertex indices;
    corner_uv: [3T, 2] float32, the UV of each triangle corner in `triangles` order (Blender's UV
    origin, bottom-left); texture_png: base-colour PNG bytes; matrix_world: 4x4 (nested rows or 16 floats).
    The caller checks the size first (`check_size`); the protocol refuses an oversized payload as a backstop.
    """
    vertices = np.asarray(vertices, dtype=np.float32).reshape(-1, 3)
    triangles = np.asarray(triangles, dtype=np.int32).reshape(-1, 3)
    if len(triangles) == 0:
        raise AddonError(f"'{name}' has no faces", "a job needs a mesh with faces: add geometry or pick another "
                                                   "object", code="empty_mesh")
    if not np.isfinite(vertices).all():
        raise AddonError(f"'{name}' has vertices at infinite or NaN positions", "fix or remove them",
                         code="invalid_mesh")
    if triangles.min() < 0 or triangles.max() >= len(vertices):
        raise AddonError(f"'{name}' has faces that name missing vertices", "re-create the mesh", code="invalid_mesh")
    uv = None
    if corner_uv is not None:
        uv = np.asarray(corner_uv, dtype=np.float32).reshape(-1, 2)
        if len(uv) != 3 * len(triangles):
            raise ValueError(f"corner_uv must have 3T = {3 * len(triangles)} rows, got {len(uv)}")
        if not np.isfinite(uv).all():
            uv = None  # broken UVs are worth less than none
    transform = flat_matrix(matrix_world) if matrix_world is not None else None
    try:
        return MeshPayload(vertices=to_array(vertices, "float32"), faces=to_array(triangles, "int32"),
                           uv=None if uv is None else to_array(uv, "float32"),
                           uv_domain="corner" if uv is not None else "auto", texture=texture_png,
                           **({"transform": transform} if transform is not None else {}))
    except ProtocolError as exc:
        raise AddonError(f"'{name}' cannot be sent: {exc.message}", exc.hint, code="invalid_mesh") from exc


def flat_matrix(matrix) -> tuple[float, ...]:
    """A 4x4 matrix (mathutils.Matrix, nested rows, or 16 numbers) as 16 row-major floats."""
    rows = list(matrix)
    flat = [v for row in rows for v in row] if rows and hasattr(rows[0], "__len__") else rows
    try:
        values = np.asarray(flat, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        values = np.full(1, np.nan)
    if values.shape != (16,) or not np.isfinite(values).all():
        raise AddonError("the object's transform is not a finite 4x4 matrix", "reset it (Object > Apply > All "
                                                                              "Transforms)", code="invalid_mesh")
    return tuple(float(v) for v in values)


def encode_png(image: np.ndarray) -> bytes:
    """[H, W, C] uint8 (C = 1, 3 or 4), row 0 at the top -> PNG bytes (zlib, filter 0)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim == 2:
        image = image[:, :, None]
    height, width, channels = image.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, -1)], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def pixels_to_png(pixels: np.ndarray, width: int, height: int, channels: int = 4) -> bytes:
    """Blender `Image.pixels` (flat floats in [0, 1], row 0 at the bottom) -> PNG bytes (row 0 at the top).

    Byte images hold their stored (sRGB) values in `pixels`, so no colour conversion is applied.
    """
    values = np.asarray(pixels, dtype=np.float32).reshape(height, width, channels)[::-1]
    return encode_png(np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8))


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; AddonError for data that is not a PNG."""
    if len(data) < 24 or not data.startswith(limits.PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise AddonError("the image is not a PNG")
    return struct.unpack(">II", data[16:24])
