import numpy as np
import pytest

from backend.errors import InvalidInputError
from backend.geometry.mesh import Mesh
from backend.geometry.normalize import Similarity, normalize_to_unit_sphere
from backend.geometry.normals import FALLBACK_NORMAL, vertex_normals
from backend.geometry.primitives import cube, icosphere


def test_normalize_centres_scales_and_inverts():
    base = cube()
    # Off-centre, anisotropic, with a dense cluster that would pull a centroid but not a bbox centre.
    vertices = base.vertices * np.array([4.0, 1.0, 2.0], np.float32) + np.array([10.0, -3.0, 7.0], np.float32)
    mesh = base.copy(vertices=vertices, metadata={"k": 1})
    normalised, similarity = normalize_to_unit_sphere(mesh)
    bbox_centre = 0.5 * (normalised.vertices.min(axis=0) + normalised.vertices.max(axis=0))
    np.testing.assert_allclose(bbox_centre, 0.0, atol=1e-6)
    assert np.linalg.norm(normalised.vertices, axis=1).max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(similarity.invert(normalised.vertices), vertices, atol=1e-5)
    np.testing.assert_allclose(similarity.apply(vertices), normalised.vertices, atol=1e-6)
    np.testing.assert_allclose(similarity.invert_mesh(normalised).vertices, vertices, atol=1e-5)
    # Displacements only scale: a unit step in normalised space is 1/scale in the source.
    np.testing.assert_allclose(similarity.invert_vectors(np.array([1.0, 0, 0])), [1 / similarity.scale, 0, 0], rtol=1e-6)
    homogeneous = np.column_stack([vertices, np.ones(len(vertices))]) @ similarity.matrix().T
    np.testing.assert_allclose(homogeneous[:, :3], normalised.vertices, atol=1e-5)
    assert normalised.faces is mesh.faces and mesh.vertices is vertices  # input untouched


def test_similarity_roundtrip_arbitrary_points():
    similarity = Similarity(scale=0.25, translation=np.array([1.0, 2.0, 3.0]))
    points = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_allclose(similarity.invert(similarity.apply(points)), points, atol=1e-5)


def test_normalize_rejects_a_point():
    mesh = Mesh(np.ones((3, 3), np.float32), np.array([[0, 1, 2]], np.int32))
    with pytest.raises(InvalidInputError, match="all lie at one point"):
        normalize_to_unit_sphere(mesh)


def test_vertex_normals_of_sphere_point_outward():
    sphere = icosphere(2)
    normals = vertex_normals(sphere.vertices, sphere.faces)
    assert normals.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, rtol=1e-6)
    assert np.min(np.sum(normals * sphere.vertices, axis=1)) > 0.99


def test_vertex_normals_are_area_weighted():
    # Vertex 0 touches a big face in the XY plane (normal +Z, area 50) and a small one in XZ (normal +Y, area 0.5).
    vertices = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 1], [1, 0, 0]], np.float32)
    faces = np.array([[0, 1, 2], [0, 3, 4]], np.int32)
    normal = vertex_normals(vertices, faces)[0]
    assert normal[2] > 0.99 and normal[1] > 0  # big face dominates, small one still counts


def test_vertex_normals_fallback_for_unused_vertices():
    base = cube()
    vertices = np.concatenate([base.vertices, [[5, 5, 5]]]).astype(np.float32)
    normals = vertex_normals(vertices, base.faces)
    np.testing.assert_array_equal(normals[8], FALLBACK_NORMAL)
