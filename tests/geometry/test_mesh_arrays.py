"""mesh_from_arrays: protocol arrays into a Mesh, including per-corner UV splitting."""

import io

import numpy as np
import pytest
from PIL import Image

from backend.errors import InvalidInputError
from backend.geometry.load import mesh_from_arrays, split_corner_uv
from backend.geometry.primitives import cube, textured_cube


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_per_vertex_arrays_pass_through():
    source = textured_cube()
    colours = np.linspace(0, 1, 24 * 3, dtype=np.float32).reshape(24, 3)
    mesh = mesh_from_arrays(source.vertices, source.faces, uv=source.uv, vertex_colors=colours,
                            texture_png=_png(source.texture), name="box")
    np.testing.assert_array_equal(mesh.vertices, source.vertices)
    np.testing.assert_array_equal(mesh.uv, source.uv)
    np.testing.assert_array_equal(mesh.texture, source.texture)
    np.testing.assert_array_equal(mesh.metadata["source_vertex"], np.arange(24))
    assert mesh.name == "box" and mesh.vertex_colors.dtype == np.float32


def test_per_corner_uv_splits_only_at_seams():
    # The textured cube's UVs as they travel from Blender: one pair per face corner, on the 8-vertex cube.
    textured = textured_cube()
    corner_uv = textured.uv[textured.faces.reshape(-1)]
    solid = cube()
    corner_faces = textured.metadata["source_vertex"][textured.faces]
    colours = np.linspace(0, 1, 8 * 4, dtype=np.float32).reshape(8, 4)
    mesh = mesh_from_arrays(solid.vertices, corner_faces, uv=corner_uv, vertex_colors=colours)
    # Each cube corner touches 3 faces with 3 different UVs: 24 vertices, no more.
    assert mesh.num_vertices == 24 and mesh.num_faces == 12
    source = mesh.metadata["source_vertex"]
    assert source.dtype == np.int32 and np.all(np.diff(source) >= 0)
    np.testing.assert_array_equal(mesh.vertices, solid.vertices[source])
    np.testing.assert_array_equal(mesh.vertex_colors, colours[source])
    # Every corner keeps its position and UV, and the faces still reference the original vertices.
    np.testing.assert_array_equal(mesh.uv[mesh.faces].reshape(-1, 2), corner_uv)
    np.testing.assert_array_equal(source[mesh.faces], corner_faces)


def test_per_corner_uv_shared_corners_are_merged():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    corner_uv = np.array([[0, 1], [1, 1], [1, 0], [0, 1], [1, 0], [-0.0, 0]], np.float32)
    out_vertices, out_faces, uv, source = split_corner_uv(vertices, faces, corner_uv)
    assert len(out_vertices) == 4  # no seam: equal UVs (including -0.0 vs 0.0) share a vertex
    np.testing.assert_array_equal(source, [0, 1, 2, 3])
    # A seam at vertex 2 splits exactly that vertex.
    corner_uv[4] = [0.5, 0.5]
    _, out_faces, uv, source = split_corner_uv(vertices, faces, corner_uv)
    np.testing.assert_array_equal(source, [0, 1, 2, 2, 3])
    np.testing.assert_array_equal(uv[out_faces].reshape(-1, 2), corner_uv)


def test_uv_ambiguous_length_is_per_vertex():
    # One triangle: N == 3F, so an (N, 2) array is read per vertex and nothing is split.
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    uv = np.array([[0, 0], [1, 0], [0, 1]], np.float32)
    mesh = mesh_from_arrays(vertices, np.array([[2, 0, 1]], np.int32), uv=uv)
    np.testing.assert_array_equal(mesh.uv, uv)


def _raises(*fragments, **kwargs):
    with pytest.raises(InvalidInputError) as info:
        mesh_from_arrays(**kwargs)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    assert info.value.hint


def test_rejected_arrays():
    v, f = cube().vertices, cube().faces
    _raises("uv must have shape (8, 2) per vertex or (36, 2) per face corner", vertices=v, faces=f, uv=np.zeros((5, 2)))
    _raises("faces must be triangles (F, 3)", vertices=v, faces=np.zeros((3, 4), np.int32))
    _raises("vertices must have shape (N, 3)", vertices=v[:, :2], faces=f)
    _raises("out of range", vertices=v, faces=f + 1)
    _raises("vertex_colors must have shape", vertices=v, faces=f, vertex_colors=np.zeros((3, 3)))
    _raises("uv contain NaN", vertices=v, faces=f, uv=np.full((36, 2), np.nan))
    _raises("per-corner uv must be a (36, 2) real array", vertices=v, faces=f, uv=np.full((36, 2), "a"))
    _raises("texture could not be decoded", vertices=v, faces=f, uv=np.zeros((8, 2)), texture_png=b"\x89PNG not really")
    _raises("texture but no UVs", vertices=v, faces=f, texture_png=_png(np.zeros((4, 4, 3), np.uint8)))


def test_texture_modes_and_size_limit(monkeypatch):
    v, f, uv = cube().vertices, cube().faces, np.zeros((8, 2), np.float32)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 128
    assert mesh_from_arrays(v, f, uv=uv, texture_png=_png(rgba)).texture.shape == (4, 4, 4)
    opaque = rgba.copy()
    opaque[..., 3] = 255
    assert mesh_from_arrays(v, f, uv=uv, texture_png=_png(opaque)).texture.shape == (4, 4, 3)  # opaque alpha dropped
    grey = np.full((4, 4), 7, np.uint8)
    assert mesh_from_arrays(v, f, uv=uv, texture_png=_png(grey)).texture.shape == (4, 4, 3)
    monkeypatch.setattr("backend.geometry.load.MAX_TEXTURE_SIDE", 2)
    _raises("larger than 2 on a side", vertices=v, faces=f, uv=uv, texture_png=_png(grey))
