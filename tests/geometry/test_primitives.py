import numpy as np
import pytest
import trimesh

from backend.geometry.normals import face_normals
from backend.geometry.primitives import CUBE_FACE_COLORS, cube, icosphere, tetrahedron, textured_cube


def _closed_and_outward(mesh) -> None:
    shape = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    shape.merge_vertices()  # textured_cube splits vertices at seams; topology is still closed
    assert shape.is_watertight and shape.is_winding_consistent
    assert shape.volume > 0  # positive signed volume <=> counter-clockwise seen from outside
    centres = mesh.vertices[mesh.faces].mean(axis=1)
    assert np.all(np.sum(face_normals(mesh.vertices, mesh.faces) * centres, axis=1) > 0)


@pytest.mark.parametrize("make", [cube, textured_cube, tetrahedron, lambda: icosphere(0), lambda: icosphere(2)])
def test_primitives_are_closed_outward_and_typed(make):
    mesh = make()
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int32
    _closed_and_outward(mesh)
    np.testing.assert_array_equal(make().vertices, mesh.vertices)  # deterministic


def test_cube_shape():
    mesh = cube()
    assert mesh.vertices.shape == (8, 3) and mesh.faces.shape == (12, 3)
    np.testing.assert_allclose(mesh.vertices.min(axis=0), -0.5)
    np.testing.assert_allclose(mesh.vertices.max(axis=0), 0.5)
    np.testing.assert_allclose(cube(2.0).vertices.max(axis=0), 1.0)
    assert trimesh.Trimesh(mesh.vertices, mesh.faces).volume == pytest.approx(1.0)


def test_textured_cube_maps_each_face_to_its_colour():
    mesh = textured_cube()
    assert mesh.vertices.shape == (24, 3) and mesh.faces.shape == (12, 3) and mesh.texture.shape == (16, 32, 3)
    np.testing.assert_array_equal(cube().vertices[mesh.metadata["source_vertex"]], mesh.vertices)
    h, w = mesh.texture.shape[:2]
    for k in range(6):
        # Centre of the k-th quad's UVs samples its cell colour (glTF: v down, row 0 at the top).
        centre_uv = mesh.uv[4 * k:4 * k + 4].mean(axis=0)
        pixel = mesh.texture[int(centre_uv[1] * h), int(centre_uv[0] * w)]
        np.testing.assert_array_equal(pixel, CUBE_FACE_COLORS[k])


def test_icosphere_counts_and_radius():
    for s in range(3):
        mesh = icosphere(s, radius=2.0)
        assert mesh.vertices.shape == (10 * 4**s + 2, 3) and mesh.faces.shape == (20 * 4**s, 3)
        np.testing.assert_allclose(np.linalg.norm(mesh.vertices, axis=1), 2.0, rtol=1e-6)
    with pytest.raises(ValueError, match="subdivisions"):
        icosphere(-1)


def test_tetrahedron_on_unit_sphere():
    mesh = tetrahedron()
    np.testing.assert_allclose(np.linalg.norm(mesh.vertices, axis=1), 1.0, rtol=1e-6)
