import numpy as np
import pytest

from backend.errors import InvalidInputError
from backend.geometry.mesh import Mesh
from backend.geometry.primitives import cube, textured_cube
from backend.geometry.validate import degenerate_faces, validate_mesh


def _raises(mesh, *fragments, **limits):
    with pytest.raises(InvalidInputError) as info:
        validate_mesh(mesh, **limits)
    text = str(info.value)
    for fragment in fragments:
        assert fragment in text, text
    assert info.value.hint  # every rejection says how to fix it
    return info.value


def test_valid_mesh_passes_and_is_coerced():
    base = cube()
    mesh = base.copy(vertices=base.vertices.astype(np.float64), faces=base.faces.astype(np.int64))
    out = validate_mesh(mesh)
    assert out.vertices.dtype == np.float32 and out.faces.dtype == np.int32
    assert out.metadata["dropped_degenerate_faces"] == 0
    assert out.num_faces == 12
    assert "dropped_degenerate_faces" not in mesh.metadata  # the input is not mutated


def test_empty_mesh():
    _raises(Mesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32)), "no vertices")
    _raises(cube().copy(faces=np.zeros((0, 3), np.int32)), "no faces")


def test_faces_not_triangles():
    error = _raises(cube().copy(faces=np.zeros((6, 4), np.int32)), "faces must be triangles (F, 3)")
    assert "triangulate" in error.hint.lower()


def test_wrong_dtypes_and_shapes():
    _raises(cube().copy(faces=cube().faces.astype(np.float32)), "faces must be integer")
    _raises(cube().copy(vertices=np.array([["a", "b", "c"]] * 8)), "vertices must be an array of real numbers")
    _raises(cube().copy(vertices=cube().vertices[:, :2]), "vertices must have shape (N, 3)")


def test_non_finite_vertices():
    vertices = cube().vertices.copy()
    vertices[3, 1] = np.nan
    _raises(cube().copy(vertices=vertices), "vertices contain NaN or infinite")
    vertices[3, 1] = np.inf
    _raises(cube().copy(vertices=vertices), "NaN or infinite")


def test_face_indices_out_of_range():
    faces = cube().faces.copy()
    faces[0, 0] = 8
    _raises(cube().copy(faces=faces), "face index 8 is out of range for 8 vertices")
    faces[0, 0] = -1
    _raises(cube().copy(faces=faces), "must not be negative")


def test_attribute_rows_must_match_vertices():
    mesh = cube()
    _raises(mesh.copy(uv=np.zeros((7, 2), np.float32)), "uv must have shape (8, 2)")
    _raises(mesh.copy(vertex_colors=np.zeros((8, 5), np.float32)), "vertex_colors must have shape (8, 3) or (8, 4)")
    _raises(mesh.copy(vertex_colors=np.zeros((9, 3), np.float32)), "vertex_colors must have shape")
    error = _raises(mesh.copy(vertex_colors=np.full((8, 3), 255.0, np.float32)), "must lie in [0, 1]")
    assert "255" in error.hint
    _raises(mesh.copy(uv=np.full((8, 2), np.nan, np.float32)), "uv contain NaN")


def test_texture_checks():
    mesh = textured_cube()
    _raises(mesh.copy(uv=None), "texture but no UVs")
    _raises(mesh.copy(texture=mesh.texture.astype(np.float32)), "texture must be uint8")
    _raises(mesh.copy(texture=mesh.texture[:, :, 0]), "texture must have shape (H, W, 3) or (H, W, 4)")


def test_degenerate_faces_are_dropped_and_counted():
    base = cube()
    extra = np.array([[0, 0, 1], [0, 1, 3]], np.int32)  # repeated index; collinear corners (0, 1, 3)
    vertices = base.vertices.copy()
    vertices[3] = 2 * vertices[1] - vertices[0]  # puts vertex 3 on the line through 0 and 1
    mesh = base.copy(vertices=vertices, faces=np.concatenate([base.faces, extra]))
    bad = degenerate_faces(mesh.vertices, mesh.faces)
    assert bad[-2] and bad[-1]
    out = validate_mesh(mesh)
    assert out.metadata["dropped_degenerate_faces"] == int(bad.sum())
    assert out.num_faces == 14 - int(bad.sum())
    assert out.num_vertices == 8  # vertices are never removed, so indices stay valid


def test_degenerate_is_relative_to_size():
    tiny = cube(1e-4)
    assert not degenerate_faces(tiny.vertices, tiny.faces).any()


def test_all_faces_degenerate():
    mesh = Mesh(np.zeros((3, 3), np.float32), np.array([[0, 1, 2]], np.int32))
    _raises(mesh, "all 1 faces of the mesh are degenerate")
    line = Mesh(np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]], np.float32), np.array([[0, 1, 2], [0, 0, 1]], np.int32))
    _raises(line, "all 2 faces", "degenerate")


def test_size_limits():
    error = _raises(cube(), "8 vertices, more than the limit of 7", max_vertices=7)
    assert "decimate" in error.hint.lower()
    error = _raises(cube(), "12 faces, more than the limit of 11", max_faces=11)
    assert "decimate" in error.hint.lower()
    assert validate_mesh(cube(), max_vertices=None, max_faces=None).num_faces == 12
