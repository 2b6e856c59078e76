"""export_glb: spec structure checked directly, content read back by trimesh and by our reader."""

import struct

import numpy as np
import pytest
import trimesh

from backend.errors import InvalidInputError
from backend.geometry.glb import (
    ARRAY_BUFFER,
    ELEMENT_ARRAY_BUFFER,
    export_glb,
    read_accessor,
    read_glb,
)
from backend.geometry.primitives import cube, icosphere, textured_cube


def _coloured_textured_cube(channels=4):
    mesh = textured_cube()
    mesh.vertex_colors = np.linspace(0.0, 1.0, 24 * channels, dtype=np.float32).reshape(24, channels)
    return mesh


def _check_structure(data: bytes) -> dict:
    """The glTF 2.0 binary layout rules the writer promises."""
    magic, version, total = struct.unpack_from("<III", data, 0)
    assert (magic, version, total) == (0x46546C67, 2, len(data))
    json_length, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A and json_length % 4 == 0
    bin_length, bin_type = struct.unpack_from("<II", data, 20 + json_length)
    assert bin_type == 0x004E4942 and bin_length % 4 == 0
    assert 28 + json_length + bin_length == len(data)
    document, binary = read_glb(data)
    assert document["asset"]["version"] == "2.0"
    assert document["buffers"] == [{"byteLength": bin_length}]
    for view in document["bufferViews"]:
        assert view["byteOffset"] % 4 == 0 and view["byteLength"] > 0
        assert view["byteOffset"] + view["byteLength"] <= bin_length
        assert "byteStride" not in view
    primitive = document["meshes"][0]["primitives"][0]
    views = document["bufferViews"]
    assert views[document["accessors"][primitive["indices"]]["bufferView"]]["target"] == ELEMENT_ARRAY_BUFFER
    vertex_accessors = list(primitive["attributes"].values()) + [i for t in primitive.get("targets", []) for i in t.values()]
    count = document["accessors"][primitive["attributes"]["POSITION"]]["count"]
    for index in vertex_accessors:
        accessor = document["accessors"][index]
        assert views[accessor["bufferView"]]["target"] == ARRAY_BUFFER
        assert accessor["count"] == count  # every attribute and target has one element per vertex
    # POSITION (base and targets) must carry exact min/max.
    for index in [primitive["attributes"]["POSITION"]] + [t["POSITION"] for t in primitive.get("targets", [])]:
        accessor = document["accessors"][index]
        values = read_accessor(document, binary, index)
        assert accessor["min"] == values.min(axis=0).tolist() and accessor["max"] == values.max(axis=0).tolist()
    assert primitive["mode"] == 4 and primitive["material"] == 0
    return document


def test_structure_and_attributes():
    mesh = _coloured_textured_cube()
    data = export_glb(mesh, name="thing")
    document = _check_structure(data)
    _, binary = read_glb(data)
    primitive = document["meshes"][0]["primitives"][0]
    assert set(primitive["attributes"]) == {"POSITION", "NORMAL", "TEXCOORD_0", "COLOR_0"}
    assert document["nodes"] == [{"name": "thing", "mesh": 0}] and document["meshes"][0]["name"] == "thing"
    np.testing.assert_array_equal(read_accessor(document, binary, primitive["attributes"]["POSITION"]), mesh.vertices)
    np.testing.assert_array_equal(read_accessor(document, binary, primitive["attributes"]["COLOR_0"]), mesh.vertex_colors)
    np.testing.assert_array_equal(read_accessor(document, binary, primitive["indices"]), mesh.faces.reshape(-1))
    normals = read_accessor(document, binary, primitive["attributes"]["NORMAL"])
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, rtol=1e-6)
    colour = document["accessors"][primitive["attributes"]["COLOR_0"]]
    assert (colour["componentType"], colour["type"]) == (5126, "VEC4")
    # The texture is an embedded PNG used as the base colour.
    material = document["materials"][0]
    assert material["pbrMetallicRoughness"]["baseColorTexture"]["index"] == 0
    assert material["pbrMetallicRoughness"]["baseColorFactor"] == [1.0, 1.0, 1.0, 1.0]
    assert document["textures"] == [{"sampler": 0, "source": 0}]
    image = document["images"][0]
    assert image["mimeType"] == "image/png" and "target" not in document["bufferViews"][image["bufferView"]]
    assert material["alphaMode"] == "BLEND"  # colour alpha below 1


def test_read_back_by_trimesh(tmp_path):
    mesh = _coloured_textured_cube(channels=3)
    path = tmp_path / "cube.glb"
    data = export_glb(mesh, path)
    assert path.read_bytes() == data
    scene = trimesh.load(path, process=False, force="scene")
    (shape,) = scene.geometry.values()
    np.testing.assert_allclose(shape.vertices, mesh.vertices)
    np.testing.assert_array_equal(shape.faces, mesh.faces)
    np.testing.assert_allclose(shape.visual.uv, np.column_stack([mesh.uv[:, 0], 1 - mesh.uv[:, 1]]), atol=1e-6)  # trimesh is v-up
    np.testing.assert_allclose(shape.visual.vertex_attributes["color"], mesh.vertex_colors)
    np.testing.assert_array_equal(np.asarray(shape.visual.material.baseColorTexture.convert("RGB")), mesh.texture)


def test_vertex_colours_without_texture(tmp_path):
    mesh = cube()
    mesh.vertex_colors = np.linspace(0.0, 1.0, 24, dtype=np.float32).reshape(8, 3)
    document = _check_structure(export_glb(mesh))
    material = document["materials"][0]
    assert "baseColorTexture" not in material["pbrMetallicRoughness"] and "alphaMode" not in material
    assert material["pbrMetallicRoughness"]["baseColorFactor"] == [1.0, 1.0, 1.0, 1.0]
    colour = document["accessors"][document["meshes"][0]["primitives"][0]["attributes"]["COLOR_0"]]
    assert colour["type"] == "VEC3"
    assert "images" not in document and "textures" not in document
    path = tmp_path / "coloured.glb"
    export_glb(mesh, path)
    (shape,) = trimesh.load(path, process=False, force="scene").geometry.values()
    # With a material present trimesh keeps COLOR_0 as a raw vertex attribute.
    np.testing.assert_allclose(shape.visual.vertex_attributes["color"], mesh.vertex_colors)


def test_plain_mesh_without_normals():
    document = _check_structure(export_glb(icosphere(1), normals=False))
    assert set(document["meshes"][0]["primitives"][0]["attributes"]) == {"POSITION"}
    assert document["nodes"][0]["name"] == "icosphere1"  # default name: the mesh's


def test_morph_targets_and_names():
    mesh = cube()
    grow = mesh.vertices * 0.5
    lift = np.tile(np.array([0.0, 1.0, 0.0], np.float32), (8, 1))
    data = export_glb(mesh, morph_targets={"grow": grow, "lift": lift})
    document = _check_structure(data)
    _, binary = read_glb(data)
    gltf_mesh = document["meshes"][0]
    assert gltf_mesh["extras"]["targetNames"] == ["grow", "lift"]
    assert gltf_mesh["weights"] == [0.0, 0.0]
    targets = gltf_mesh["primitives"][0]["targets"]
    assert [set(t) for t in targets] == [{"POSITION"}, {"POSITION"}]
    np.testing.assert_array_equal(read_accessor(document, binary, targets[0]["POSITION"]), grow)
    np.testing.assert_array_equal(read_accessor(document, binary, targets[1]["POSITION"]), lift)
    # No targets: no targets, weights or names at all.
    plain = read_glb(export_glb(mesh, morph_targets={}))[0]["meshes"][0]
    assert "targets" not in plain["primitives"][0] and "weights" not in plain and "extras" not in plain


def test_bad_morph_targets_and_meshes_are_rejected(tmp_path):
    mesh = cube()
    cases = [
        ({"bad": np.zeros((7, 3))}, "morph target 'bad' must be a (8, 3) float array"),
        ({"bad": np.full((8, 3), np.nan)}, "morph target 'bad' contains NaN"),
        ({"": np.zeros((8, 3))}, "morph target names must be non-empty strings"),
    ]
    for targets, fragment in cases:
        with pytest.raises(InvalidInputError) as info:
            export_glb(mesh, morph_targets=targets)
        assert fragment in str(info.value) and info.value.hint
    with pytest.raises(InvalidInputError, match="faces must be triangles"):
        export_glb(mesh.copy(faces=np.zeros((2, 4), np.int32)))
    with pytest.raises(InvalidInputError, match="cannot write") as info:
        export_glb(mesh, tmp_path / "missing" / "out.glb")
    assert "folder" in info.value.hint


def test_read_glb_rejects_garbage():
    with pytest.raises(InvalidInputError, match="too short"):
        read_glb(b"glTF")
    with pytest.raises(InvalidInputError, match="bad GLB header"):
        read_glb(b"\x00" * 32)
