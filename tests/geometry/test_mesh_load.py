"""load_mesh: every format round-trips through files written by trimesh (or by hand where the
convention itself is under test), and every rejected file gives an error naming it."""

import json
import struct

import numpy as np
import pytest
import trimesh
from PIL import Image

from backend.errors import InvalidInputError
from backend.geometry.color import srgb_to_linear
from backend.geometry.glb import export_glb
from backend.geometry.load import SUPPORTED_EXTENSIONS, load_mesh
from backend.geometry.primitives import cube, icosphere, textured_cube

FORMATS = [e[1:] for e in SUPPORTED_EXTENSIONS]


def _trimesh_textured(mesh, texture=None):
    """A trimesh copy of a textured Mesh; trimesh keeps UVs v-up, so glTF UVs are flipped going in."""
    uv = np.column_stack([mesh.uv[:, 0], 1.0 - mesh.uv[:, 1]])
    image = Image.fromarray(mesh.texture if texture is None else texture)
    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=False, visual=trimesh.visual.TextureVisuals(uv=uv, image=image))


def _triangles(mesh) -> np.ndarray:
    """[F, 3, 3] corner positions, sorted so comparisons ignore vertex numbering."""
    corners = mesh.vertices[mesh.faces].round(5)
    return np.array(sorted(map(lambda t: tuple(t.reshape(-1)), corners)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_geometry_round_trip(tmp_path, fmt):
    source = icosphere(1)
    path = tmp_path / f"ball.{fmt}"
    trimesh.Trimesh(source.vertices, source.faces, process=False).export(path)
    mesh = load_mesh(path)
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int32
    assert mesh.name == "ball" and mesh.metadata["format"] == fmt and mesh.metadata["source_path"] == str(path)
    assert mesh.num_faces == source.num_faces and mesh.num_vertices == source.num_vertices  # STL is re-joined
    np.testing.assert_allclose(_triangles(mesh), _triangles(source), atol=1e-5)
    assert mesh.uv is None and mesh.texture is None and mesh.vertex_colors is None


def test_load_accepts_upper_case_extension(tmp_path):
    path = tmp_path / "BOX.OBJ"
    trimesh.Trimesh(cube().vertices, cube().faces, process=False).export(path, file_type="obj")
    assert load_mesh(path).num_faces == 12


@pytest.mark.parametrize("fmt", ["obj", "glb", "gltf"])
def test_textured_round_trip(tmp_path, fmt):
    source = textured_cube()
    path = tmp_path / f"tex.{fmt}"
    _trimesh_textured(source).export(path)
    mesh = load_mesh(path)
    np.testing.assert_array_equal(mesh.vertices, source.vertices)
    np.testing.assert_array_equal(mesh.faces, source.faces)
    np.testing.assert_allclose(mesh.uv, source.uv, atol=1e-6)  # back in glTF convention
    np.testing.assert_array_equal(mesh.texture, source.texture)


def test_ply_uv_without_texture(tmp_path):
    source = textured_cube()
    path = tmp_path / "uv.ply"
    _trimesh_textured(source).export(path)
    mesh = load_mesh(path)
    np.testing.assert_allclose(mesh.uv, source.uv, atol=1e-6)
    assert mesh.texture is None  # PLY has no texture here; trimesh's placeholder image is not one


def test_obj_uv_convention_is_flipped_to_gltf(tmp_path):
    # OBJ's vt has v up (0 = bottom of the image); the Mesh convention has v down.
    path = tmp_path / "tri.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nvt 0.25 0.1\nvt 0.75 0.1\nvt 0.75 0.9\nf 1/1 2/2 3/3\n")
    mesh = load_mesh(path)
    np.testing.assert_allclose(mesh.uv, [[0.25, 0.9], [0.75, 0.9], [0.75, 0.1]], atol=1e-6)


def test_glb_uv_convention_is_unchanged(tmp_path):
    # glTF stores v down already: what is in TEXCOORD_0 is what Mesh.uv holds.
    source = textured_cube()
    path = tmp_path / "cube.glb"
    data = export_glb(source, path)
    json_length = struct.unpack_from("<I", data, 12)[0]
    document = json.loads(data[20:20 + json_length])
    accessor = document["accessors"][document["meshes"][0]["primitives"][0]["attributes"]["TEXCOORD_0"]]
    offset = 28 + json_length + document["bufferViews"][accessor["bufferView"]]["byteOffset"]
    stored = np.frombuffer(data, np.float32, count=2 * source.num_vertices, offset=offset)
    np.testing.assert_array_equal(stored.reshape(-1, 2), source.uv)
    np.testing.assert_array_equal(load_mesh(path).uv, source.uv)


@pytest.mark.parametrize("fmt", ["obj", "ply", "glb", "gltf"])
def test_vertex_colour_round_trip(tmp_path, fmt):
    source = cube()
    colours8 = (np.arange(24).reshape(8, 3) * 10).astype(np.uint8)
    path = tmp_path / f"coloured.{fmt}"
    trimesh.Trimesh(source.vertices, source.faces, vertex_colors=colours8, process=False).export(path)
    mesh = load_mesh(path)
    assert mesh.vertex_colors.shape == (8, 3)  # opaque alpha dropped
    if fmt in ("glb", "gltf"):
        expected = colours8 / 255.0  # glTF COLOR_0 is linear by spec
    else:
        expected = srgb_to_linear(colours8 / 255.0)  # 8-bit PLY/OBJ colours are sRGB by convention
    np.testing.assert_allclose(mesh.vertex_colors, expected, atol=1e-5)


def test_off_hand_written(tmp_path):
    path = tmp_path / "quad.off"
    path.write_text("OFF\n4 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n3 0 1 2\n3 0 2 3\n")
    mesh = load_mesh(path)
    assert mesh.num_vertices == 4 and mesh.num_faces == 2


def test_own_glb_round_trip_keeps_float_colours_texture_and_alpha(tmp_path):
    source = textured_cube()
    rng = np.random.default_rng(0)
    source.vertex_colors = rng.random((24, 4)).astype(np.float32)
    path = tmp_path / "own.glb"
    export_glb(source, path)
    mesh = load_mesh(path)
    np.testing.assert_allclose(mesh.vertex_colors, source.vertex_colors, atol=1e-6)
    np.testing.assert_array_equal(mesh.texture, source.texture)
    np.testing.assert_array_equal(mesh.uv, source.uv)


def test_glb_material_colour_becomes_vertex_colour(tmp_path):
    source = cube()
    material = trimesh.visual.material.PBRMaterial(baseColorFactor=[255, 0, 0, 255])
    shape = trimesh.Trimesh(source.vertices, source.faces, process=False, visual=trimesh.visual.TextureVisuals(material=material))
    path = tmp_path / "red.glb"
    shape.export(path)
    np.testing.assert_allclose(load_mesh(path).vertex_colors, np.tile([1.0, 0, 0], (8, 1)))
    # export_glb's white factor is neutral: a plain mesh comes back without colours.
    export_glb(source, tmp_path / "plain.glb")
    assert load_mesh(tmp_path / "plain.glb").vertex_colors is None


def test_scene_nodes_are_flattened_with_transforms(tmp_path):
    source = cube()
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.Trimesh(source.vertices, source.faces, process=False), node_name="moved",
                       transform=trimesh.transformations.translation_matrix([3.0, 0, 0]))
    mirror = np.diag([-2.0, 2.0, 2.0, 1.0])  # scale 2 and mirror X: winding must be fixed
    scene.add_geometry(trimesh.Trimesh(source.vertices, source.faces, process=False), node_name="mirrored", transform=mirror)
    path = tmp_path / "scene.glb"
    scene.export(path)
    mesh = load_mesh(path)
    assert mesh.num_vertices == 16 and mesh.num_faces == 24
    np.testing.assert_allclose(mesh.vertices.min(axis=0), [-1.0, -1.0, -1.0])
    np.testing.assert_allclose(mesh.vertices.max(axis=0), [3.5, 1.0, 1.0])
    whole = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert whole.volume == pytest.approx(1.0 + 8.0)  # both parts still face outward


def test_parts_sharing_one_texture_keep_it(tmp_path):
    source = textured_cube()
    scene = trimesh.Scene()
    scene.add_geometry(_trimesh_textured(source), node_name="a")
    scene.add_geometry(_trimesh_textured(source), node_name="b", transform=trimesh.transformations.translation_matrix([2.0, 0, 0]))
    path = tmp_path / "shared.glb"
    scene.export(path)
    mesh = load_mesh(path)
    assert mesh.num_vertices == 48
    np.testing.assert_array_equal(mesh.texture, source.texture)
    np.testing.assert_allclose(mesh.uv[24:], source.uv, atol=1e-6)


def test_parts_with_different_textures_are_packed_into_one(tmp_path):
    source = textured_cube()
    scene = trimesh.Scene()
    scene.add_geometry(_trimesh_textured(source), node_name="a")
    scene.add_geometry(_trimesh_textured(source, 255 - source.texture), node_name="b",
                       transform=trimesh.transformations.translation_matrix([2.0, 0, 0]))
    path = tmp_path / "two.glb"
    scene.export(path)
    mesh = load_mesh(path)
    assert mesh.num_vertices == 48 and mesh.num_faces == 24
    assert mesh.texture is not None and mesh.uv is not None
    assert mesh.uv.min() >= 0.0 and mesh.uv.max() <= 1.0


# --- rejected files: each message names the file --------------------------------------------------


def _rejects(path, *fragments) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as info:
        load_mesh(path)
    text = str(info.value)
    assert path.name in text, text
    for fragment in fragments:
        assert fragment in text, text
    assert info.value.hint
    return info.value


def test_unknown_extension(tmp_path):
    path = tmp_path / "model.fbx"
    path.write_bytes(b"x")
    error = _rejects(path, "unsupported file type '.fbx'")
    assert "obj" in error.hint and "glb" in error.hint


def test_missing_file(tmp_path):
    _rejects(tmp_path / "nowhere.obj", "not found")


@pytest.mark.parametrize(
    "name, content",
    [
        ("bad.glb", b"not a glb at all" * 3),
        ("bad.ply", b"ply\nformat garbage\n"),
        ("bad.off", b"OFF\n3 1 0\n0 0 0\n"),
        ("bad.gltf", b'{"asset": '),
        ("bad.stl", b"\x00" * 10),
        ("bad.obj", b""),
    ],
)
def test_corrupt_files(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    error = _rejects(path)
    assert "cannot read" in error.message or "no triangles" in error.message


def test_point_cloud_has_no_triangles(tmp_path):
    path = tmp_path / "points.ply"
    trimesh.PointCloud(icosphere(0).vertices).export(path)
    _rejects(path, "contains no triangles")


def test_nan_vertex_in_file(tmp_path):
    path = tmp_path / "nan.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n")
    _rejects(path, "NaN")
