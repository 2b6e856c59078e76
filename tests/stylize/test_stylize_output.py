"""The stylized GLB: vertex colours, the displacement as a morph target, UVs and texture kept or baked."""

from __future__ import annotations

import numpy as np
import pytest
from stylize_helpers import tiny_config

from backend.geometry.glb import read_accessor, read_glb
from backend.geometry.primitives import icosphere, textured_cube
from backend.stylize.bake import bake_vertex_colors
from backend.stylize.output import SHAPE_KEY, export_stylized_glb, stylized_mesh
from backend.stylize.text2mesh import stylize


def primitive(data: bytes):
    document, binary = read_glb(data)
    prim = document["meshes"][0]["primitives"][0]
    return document, binary, prim


@pytest.fixture(scope="module")
def sphere_result(tiny_clip):
    return stylize(icosphere(1), "a red ball", tiny_clip, tiny_config(steps=2))


def test_glb_has_colours_and_the_displacement_as_a_named_morph_target(sphere_result, tmp_path):
    data = export_stylized_glb(sphere_result, tmp_path / "out.glb")
    assert (tmp_path / "out.glb").read_bytes() == data
    document, binary, prim = primitive(data)
    assert document["meshes"][0]["extras"]["targetNames"] == [SHAPE_KEY]
    np.testing.assert_array_equal(read_accessor(document, binary, prim["attributes"]["POSITION"]),
                                  sphere_result.mesh.vertices)
    np.testing.assert_array_equal(read_accessor(document, binary, prim["targets"][0]["POSITION"]),
                                  sphere_result.displacement)
    np.testing.assert_array_equal(read_accessor(document, binary, prim["attributes"]["COLOR_0"]), sphere_result.colors)
    assert "NORMAL" not in prim["attributes"], "Blender must compute normals so the shape key shades"


def test_textured_mesh_keeps_uvs_and_texture(tiny_clip):
    source = textured_cube()
    result = stylize(source, "a box", tiny_clip, tiny_config(steps=1))
    mesh, targets = stylized_mesh(result)
    np.testing.assert_array_equal(mesh.uv, source.uv)
    np.testing.assert_array_equal(mesh.texture, source.texture)
    assert mesh.vertex_colors is not None and set(targets) == {SHAPE_KEY}
    baked, targets = stylized_mesh(result, bake_texture=True, texture_size=32)
    np.testing.assert_array_equal(baked.uv, source.uv)  # UVs in [0, 1] are reused, not re-unwrapped
    assert baked.vertex_colors is None and baked.texture.shape == (32, 32, 3)
    assert not np.array_equal(baked.texture[..., :3], source.texture[..., :3][:32, :32])


def test_bake_without_uvs_unwraps_and_remaps_the_morph_target(sphere_result):
    baked, targets = stylized_mesh(sphere_result, bake_texture=True, texture_size=64)
    assert baked.uv is not None and baked.num_vertices >= sphere_result.mesh.num_vertices
    rows = []
    for point in baked.vertices:  # every unwrapped vertex copies one source row: same position, same delta
        rows.append(np.flatnonzero(np.all(sphere_result.mesh.vertices == point, axis=1))[0])
    np.testing.assert_array_equal(targets[SHAPE_KEY], sphere_result.displacement[rows])
    data = export_stylized_glb(sphere_result, bake_texture=True, texture_size=64)
    document, _, prim = primitive(data)
    assert "TEXCOORD_0" in prim["attributes"] and "COLOR_0" not in prim["attributes"] and document["images"]


def test_bake_paints_each_triangle_where_its_uvs_are():
    # The unit square split along its diagonal: a red triangle at the top-left (v = 0 is the top), a blue one below.
    uv = np.array([[0, 0], [1, 0], [0, 1], [1, 0], [1, 1], [0, 1]], dtype=np.float32)
    faces = np.array([[0, 1, 2], [3, 4, 5]], dtype=np.int32)
    colors = np.array([[1, 0, 0]] * 3 + [[0, 0, 1]] * 3, dtype=np.float32)
    texture = bake_vertex_colors(uv, faces, colors, size=16, padding=2, implementation="torch")
    assert texture.shape == (16, 16, 3) and texture.dtype == np.uint8
    assert tuple(texture[1, 1]) == (255, 0, 0), "u, v near 0: the top-left texel"
    assert tuple(texture[14, 14]) == (0, 0, 255)
