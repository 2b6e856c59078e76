"""World shapes: deterministic per seed, valid closed parts, every label reachable, bad overrides rejected."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from backend.geometry.validate import validate_mesh
from backend.world import CATEGORIES, COLOURS, FAMILIES, PATTERNS, Family, make_shape, register_family
from backend.world.appearance import pattern_texture, sample_appearance
from backend.world.families import HEIGHTS
from backend.world.parts import box, cylinder, ellipsoid, lathe, torus


def _arrays(shape):
    mesh = shape.mesh
    return [mesh.vertices, mesh.faces, mesh.uv, mesh.texture, mesh.metadata["normals"]]


def test_same_seed_gives_byte_identical_shapes():
    for seed in (0, 7, 123456):
        a, b = make_shape(seed), make_shape(seed)
        for x, y in zip(_arrays(a), _arrays(b)):
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        assert (a.caption, a.labels) == (b.caption, b.labels)
    assert make_shape(1).mesh.vertices.tobytes() != make_shape(2).mesh.vertices.tobytes()


def test_fixing_a_label_keeps_the_rest_of_the_seed():
    base = make_shape(5, "chair")
    fixed = make_shape(5, "chair", colour="blue" if base.colour != "blue" else "red")
    assert fixed.attributes == base.attributes
    assert fixed.mesh.vertices.tobytes() == base.mesh.vertices.tobytes()
    assert make_shape(5, "chair", legs=3, armrests="yes").attributes["legs"] == 3


def test_hundreds_of_seeds_give_valid_meshes_of_closed_outward_parts(many_shapes):
    for shape in many_shapes:
        mesh = shape.mesh
        assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int32 and mesh.uv.dtype == np.float32
        assert mesh.texture.dtype == np.uint8 and mesh.texture.ndim == 3
        for array in (mesh.vertices, mesh.uv, mesh.metadata["normals"]):
            assert np.isfinite(array).all()
        clean = validate_mesh(mesh)
        assert clean.metadata["dropped_degenerate_faces"] == 0, shape.category
        # Stands on the ground, centred on the Y axis, metre scale.
        assert abs(float(mesh.vertices[:, 1].min())) < 1e-4
        assert 0.05 < float(np.ptp(mesh.vertices[:, 1])) < 2.5
        # Shading normals are unit and agree with the winding (outward).
        normals = mesh.metadata["normals"]
        assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-4)
        corners = mesh.vertices.astype(np.float64)[mesh.faces]
        face_n = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        agree = np.einsum("fk,fck->fc", face_n, normals[mesh.faces].astype(np.float64))
        assert (agree > 0).mean() > 0.99, shape.category
        # Each part is its own closed, consistently wound component with outward winding.
        ranges = mesh.metadata["parts"]
        assert ranges[0][1] == 0 and ranges[-1][2] == mesh.num_faces
        for name, first, end in ranges:
            part = trimesh.Trimesh(mesh.vertices, mesh.faces[first:end], process=True)
            assert part.is_watertight and part.is_winding_consistent, (shape.category, name)
            assert part.volume > 0, (shape.category, name)


def test_every_family_colour_pattern_and_attribute_value_is_reachable(many_shapes):
    seen: dict = {}
    for shape in many_shapes:
        for key, value in {"category": shape.category, "colour": shape.colour, "pattern": shape.pattern}.items():
            seen.setdefault(key, set()).add(value)
        for key, value in shape.attributes.items():
            seen.setdefault((shape.category, key), set()).add(value)
    assert seen["category"] == set(FAMILIES) == set(CATEGORIES)
    assert seen["colour"] == set(COLOURS)
    assert seen["pattern"] == set(PATTERNS)
    assert len(CATEGORIES) >= 8 and {"chair", "table", "lamp", "mug", "vase", "shelf", "bed", "sofa"} <= set(CATEGORIES)
    for name, family in FAMILIES.items():
        assert tuple(family.attributes["height"]) == HEIGHTS
        for key, values in family.attributes.items():
            assert seen[(name, key)] == set(values), (name, key)


def test_patterns_show_two_colours_and_plain_one():
    rng = np.random.default_rng(0)
    for pattern in PATTERNS:
        appearance = sample_appearance(rng, "blue", pattern)
        texture = pattern_texture(appearance)
        colours = {tuple(int(c) for c in px) for px in texture.reshape(-1, 3)}
        if pattern == "plain":
            assert len(colours) == 1
        else:
            flat = texture.reshape(-1, 3).astype(int)
            assert (np.abs(flat - appearance.base_rgb).sum(1) < 4).mean() > 0.3
            assert (np.abs(flat - appearance.accent_rgb).sum(1) < 4).mean() > 0.1


def test_bad_overrides_and_seeds_say_what_is_allowed():
    with pytest.raises(ValueError, match="choose one of"):
        make_shape(0, "spaceship")
    with pytest.raises(ValueError, match="legs must be one of"):
        make_shape(0, "chair", legs=7)
    with pytest.raises(ValueError, match="has no attribute"):
        make_shape(0, "vase", legs=4)
    with pytest.raises(ValueError, match="unknown colour"):
        make_shape(0, colour="teal")
    with pytest.raises(ValueError, match="unknown pattern"):
        make_shape(0, pattern="plaid")
    with pytest.raises(ValueError, match="non-negative integer"):
        make_shape(-1)


def test_registry_refuses_duplicates_and_families_without_height_classes():
    chair = FAMILIES["chair"]
    with pytest.raises(ValueError, match="already registered"):
        register_family(chair)
    with pytest.raises(ValueError, match="height"):
        register_family(Family("blob", {"size": ("small",)}, chair.build))
    assert "blob" not in FAMILIES


@pytest.mark.parametrize("part", [
    box((0.1, 0.2, 0.3), (0.5, 0.2, 0.1)),
    cylinder((0, 0, 0), 0.3, 0.5),
    cylinder((0, 0, 0), 0.3, 0.5, top_radius=0.0),
    ellipsoid((0, 1, 0), (0.2, 0.1, 0.3)),
    torus((0, 0, 0), 0.5, 0.1),
    torus((0, 0, 0), 0.5, 0.1, arc_degrees=200, start_degrees=20),
    lathe([(0, 0), (1, 0), (1, 1), (0.8, 1), (0.8, 0.2), (0, 0.2)], sharp=(1, 2, 3, 4)),
], ids=["box", "cylinder", "cone", "ellipsoid", "torus", "torus-arc", "hollow-lathe"])
def test_parts_are_closed_and_outward(part):
    mesh = trimesh.Trimesh(part.vertices, part.faces, process=True)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0


def test_bad_part_parameters_are_rejected():
    with pytest.raises(ValueError):
        box((0, 0, 0), (1, 0, 1))
    with pytest.raises(ValueError):
        lathe([(0.1, 0), (1, 1), (0, 2)])
    with pytest.raises(ValueError):
        torus((0, 0, 0), 0.1, 0.2)
