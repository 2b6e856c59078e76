import numpy as np
import pytest

from backend.errors import InvalidInputError
from backend.geometry.load import mesh_from_arrays
from backend.geometry.primitives import icosphere, textured_cube
from backend.geometry.unwrap import UnwrapConfig, ensure_uv


def test_mesh_with_uv_is_returned_unchanged():
    mesh = textured_cube()
    out, unwrapped = ensure_uv(mesh)
    assert out is mesh and not unwrapped


def test_unwrap_splits_vertices_and_carries_colours():
    sphere = icosphere(1)
    sphere.vertex_colors = (sphere.vertices * 0.5 + 0.5).astype(np.float32)
    out, unwrapped = ensure_uv(sphere, UnwrapConfig(resolution=256, padding=2))
    assert unwrapped
    assert out.num_vertices >= sphere.num_vertices and out.num_faces == sphere.num_faces
    assert out.uv.shape == (out.num_vertices, 2) and out.uv.dtype == np.float32
    assert out.uv.min() >= 0.0 and out.uv.max() <= 1.0
    source = out.metadata["source_vertex"]
    np.testing.assert_array_equal(out.vertices, sphere.vertices[source])
    np.testing.assert_array_equal(out.vertex_colors, sphere.vertex_colors[source])
    # Faces keep their order and corners: the surface is the same, only cut along seams.
    np.testing.assert_array_equal(out.vertices[out.faces], sphere.vertices[sphere.faces])
    # Charts do not overlap: every face has non-zero UV area.
    corners = out.uv[out.faces]
    edge1, edge2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    assert np.all(np.abs(edge1[:, 0] * edge2[:, 1] - edge1[:, 1] * edge2[:, 0]) > 0)


def test_unwrap_is_deterministic():
    first, _ = ensure_uv(icosphere(1))
    second, _ = ensure_uv(icosphere(1))
    np.testing.assert_array_equal(first.uv, second.uv)
    np.testing.assert_array_equal(first.faces, second.faces)


def test_source_vertex_composes_with_an_earlier_split():
    # A mesh already split by per-corner data maps back through both splits to the input vertices.
    sphere = icosphere(0)
    split = mesh_from_arrays(sphere.vertices, sphere.faces)
    split.metadata["source_vertex"] = np.arange(split.num_vertices, dtype=np.int32)[::-1].copy()
    out, _ = ensure_uv(split)
    xatlas_map = np.array([np.flatnonzero((split.vertices == v).all(axis=1))[0] for v in out.vertices])
    np.testing.assert_array_equal(out.metadata["source_vertex"], split.metadata["source_vertex"][xatlas_map])


def test_texture_without_uv_is_rejected():
    mesh = textured_cube().copy(uv=None)
    with pytest.raises(InvalidInputError, match="texture but no UVs") as info:
        ensure_uv(mesh)
    assert info.value.hint
