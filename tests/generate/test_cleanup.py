"""Clean surfaces: floating pieces dropped by volume, Taubin smoothing that keeps the volume and thin legs, and the
clean-up report a decoded mesh carries."""

import numpy as np
import pytest
import trimesh

from backend.generate.cleanup import CleanupReport, floating_fractions, laplacian_smooth, signed_volume
from backend.generate.decode import DecodeConfig, logits_to_mesh
from backend.geometry.glb import export_glb, read_glb
from backend.geometry.voxelize import grid_centres


def ball(centres, centre, radius):
    return 10.0 * (radius - np.linalg.norm(centres - np.asarray(centre), axis=-1))


def two_balls(resolution, small_radius):
    centres = grid_centres(resolution)
    return np.maximum(ball(centres, [-0.3, 0.0, 0.0], 0.45), ball(centres, [0.6, 0.5, 0.5], small_radius))


def tri(mesh):
    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)


def chair_logits(resolution=64):
    """A box seat with four legs one or two cells thick reaching down to y = -0.8 (the voxel frame is Y up)."""
    centres = grid_centres(resolution)
    x, y, z = centres[..., 0], centres[..., 1], centres[..., 2]
    cell = 2.0 / resolution

    def box(low, high):
        # Positive inside, with the surface half-way between the last inside and first outside cell centres.
        d = np.maximum.reduce([np.maximum(low[k] - c, c - high[k]) for k, c in enumerate((x, y, z))])
        return -10.0 * d / cell

    seat = box((-0.5, 0.0, -0.5), (0.5, 0.15, 0.5))
    legs = [box((sx - w, -0.8, sz - w), (sx + w, 0.0, sz + w))
            for (sx, sz), w in zip([(-0.4, -0.4), (0.4, -0.4), (-0.4, 0.4), (0.4, 0.4)],
                                   [0.5 * cell, 0.5 * cell, cell, cell])]  # 1 and 2 cells across
    return np.maximum.reduce([seat] + legs).astype(np.float32)


def test_floaters_below_the_threshold_go_and_above_stay():
    # With keep_detached (and no bridging): radius 0.1 vs 0.45 is about 1% of the volume, under the default 5%;
    # radius 0.25, about 17%, is kept.
    config = dict(resolution=48, keep_detached=True, bridge_floor=0.0)
    small = logits_to_mesh(two_balls(48, 0.1), DecodeConfig(**config))
    large = logits_to_mesh(two_balls(48, 0.25), DecodeConfig(**config))
    everything = logits_to_mesh(two_balls(48, 0.1), DecodeConfig(**config, min_piece_fraction=0.0))
    assert len(tri(small).split(only_watertight=False)) == 1
    assert len(tri(large).split(only_watertight=False)) == 2
    assert len(tri(everything).split(only_watertight=False)) == 2
    assert small.metadata["cleanup"]["pieces"] == 2 and small.metadata["cleanup"]["pieces_removed"] == 1
    assert 0.005 < small.metadata["cleanup"]["volume_removed"] < 0.03
    assert floating_fractions(small) == [] and small.metadata["cleanup"]["largest_floating"] == 0.0
    fractions = floating_fractions(large)
    assert len(fractions) == 1 and 0.1 < fractions[0] < 0.25
    assert large.metadata["cleanup"]["largest_floating"] == pytest.approx(fractions[0], abs=1e-5)
    assert large.metadata["cleanup"]["pieces_removed"] == 0 and large.metadata["cleanup"]["volume_removed"] == 0.0


def test_by_default_one_object_remains_and_the_report_says_what_went():
    # The default: whatever is still detached after bridging goes, however large (the 17% ball here, whose field
    # between the balls never reaches the bridge floor once made steep).
    logits = np.maximum(two_balls(48, 0.25) * 3.0, -20.0)
    mesh = logits_to_mesh(logits, DecodeConfig(resolution=48))
    report = mesh.metadata["cleanup"]
    assert len(tri(mesh).split(only_watertight=False)) == 1 and floating_fractions(mesh) == []
    assert report["pieces"] == 2 and report["pieces_removed"] == 1 and report["bridged"] == 0
    assert 0.1 < report["volume_removed"] < 0.25


def test_a_leg_cut_at_its_joint_is_bridged_back():
    # A chair whose two-cell-thick back-right leg the field keeps just under the level (logit -1, occupancy 0.27) for two cells
    # below the seat: marching cubes alone leaves the leg floating; bridging joins it, and the leg reaches the floor.
    logits = chair_logits(64)
    centres = grid_centres(64)
    gap = (np.abs(centres[..., 0] - 0.4) < 0.05) & (np.abs(centres[..., 2] - 0.4) < 0.05) & \
        (centres[..., 1] < 0.0) & (centres[..., 1] > -0.07)
    logits[gap] = np.minimum(logits[gap], -1.0)
    cut = logits_to_mesh(logits, DecodeConfig(resolution=64, bridge_floor=0.0, keep_detached=True,
                                              min_piece_fraction=0.0))
    assert len(tri(cut).split(only_watertight=False)) == 2
    joined = logits_to_mesh(logits, DecodeConfig(resolution=64))
    report = joined.metadata["cleanup"]
    assert report["bridged"] == 1 and 0 < report["strut_cells"] < 60 and report["pieces_removed"] == 0
    assert len(tri(joined).split(only_watertight=False)) == 1 and tri(joined).is_watertight
    v = joined.vertices
    leg = v[(np.hypot(v[:, 0] - 0.4, v[:, 2] - 0.4) < 0.06) & (v[:, 1] < -0.1)]
    assert len(leg) and leg[:, 1].min() < -0.75
    # Without bridging the default drops the cut leg: three legs, one object.
    dropped = logits_to_mesh(logits, DecodeConfig(resolution=64, bridge_floor=0.0))
    assert dropped.metadata["cleanup"]["pieces_removed"] == 1 and len(tri(dropped).split(only_watertight=False)) == 1


def test_taubin_keeps_the_volume_where_plain_laplacian_shrinks():
    logits = ball(grid_centres(32), [0.0, 0.0, 0.0], 0.6)
    raw = logits_to_mesh(logits, DecodeConfig(resolution=32, smooth_iterations=0))
    volume = signed_volume(raw.vertices, raw.faces)
    assert volume == pytest.approx(4 / 3 * np.pi * 0.6**3, rel=0.03)
    taubin = laplacian_smooth(raw.vertices, raw.faces, 10)
    plain = laplacian_smooth(raw.vertices, raw.faces, 10, mu=None)
    taubin_change = signed_volume(taubin, raw.faces) / volume - 1.0
    plain_change = signed_volume(plain, raw.faces) / volume - 1.0
    print(f"\nvolume change after 10 rounds: Taubin {taubin_change:+.4f}, plain Laplacian {plain_change:+.4f}")
    assert abs(taubin_change) < 0.02
    assert plain_change < -0.05 and abs(plain_change) > 5 * abs(taubin_change)
    # The decoder's own smoothing is the Taubin one (held inside the raw surface's box), and reports its change.
    smooth = logits_to_mesh(logits, DecodeConfig(resolution=32))
    boxed = np.clip(taubin, raw.vertices.min(axis=0), raw.vertices.max(axis=0))
    np.testing.assert_allclose(smooth.vertices, boxed, atol=1e-6)
    assert smooth.metadata["cleanup"]["smooth_iterations"] == 10
    assert smooth.metadata["cleanup"]["smooth_volume_change"] == pytest.approx(taubin_change, abs=1e-3)
    # Smoothing really moved the vertices (off the staircase), and the normals follow the smoothed surface.
    assert np.abs(smooth.vertices - raw.vertices).max() > 1e-3
    radial = smooth.vertices / np.linalg.norm(smooth.vertices, axis=1, keepdims=True)
    assert np.einsum("ij,ij->i", smooth.metadata["normals"], radial).min() > 0.9


def test_thin_legs_survive_smoothing():
    logits = chair_logits(64)
    raw = logits_to_mesh(logits, DecodeConfig(resolution=64, smooth_iterations=0))
    smooth = logits_to_mesh(logits, DecodeConfig(resolution=64))
    assert raw.vertices[:, 1].min() == pytest.approx(-0.8, abs=0.04)
    assert smooth.vertices[:, 1].min() < -0.75  # the legs still reach the floor
    # Every leg (thin ones included) still reaches the bottom and keeps a body: the two-cell legs nearly all of
    # their width, the one-cell legs (the grid's highest frequency, which smoothing damps most) a good part of it.
    for (sx, sz), kept in zip([(-0.4, -0.4), (0.4, -0.4), (-0.4, 0.4), (0.4, 0.4)], [0.3, 0.3, 0.8, 0.8]):
        widths = []
        for mesh in (raw, smooth):
            v = mesh.vertices
            leg = v[(np.hypot(v[:, 0] - sx, v[:, 2] - sz) < 0.06) & (v[:, 1] < -0.1)]
            assert leg[:, 1].min() < -0.75, (sx, sz)
            widths.append(np.ptp(leg[:, 0]))
        assert widths[1] > kept * widths[0], (sx, sz, widths)
    report = smooth.metadata["cleanup"]
    assert report["pieces"] == 1 and report["pieces_removed"] == 0 and abs(report["smooth_volume_change"]) < 0.05
    mesh = tri(smooth)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0


def test_cleaned_mesh_is_watertight_outward_and_exports(tmp_path):
    mesh = logits_to_mesh(two_balls(32, 0.25), DecodeConfig(resolution=32, keep_detached=True))
    t = tri(mesh)
    assert t.is_watertight and t.is_winding_consistent and t.volume > 0
    assert mesh.metadata["normals"].shape == mesh.vertices.shape and np.abs(mesh.vertices).max() <= 1.0
    data = export_glb(mesh, tmp_path / "shape.glb")
    document, _ = read_glb(data)
    assert document["meshes"]


def test_report_fields_and_dict():
    report = CleanupReport(pieces=3, pieces_removed=1, volume_removed=0.0123456789, largest_floating=0.2,
                           smooth_iterations=10, smooth_volume_change=-0.001)
    data = report.as_dict()
    assert data == {"pieces": 3, "pieces_removed": 1, "volume_removed": 0.012346, "largest_floating": 0.2,
                    "smooth_iterations": 10, "smooth_volume_change": -0.001}


@pytest.mark.parametrize("kwargs, match", [
    ({"smooth_iterations": -1}, "smooth_iterations must be >= 0"),
    ({"min_piece_fraction": -0.1}, "min_piece_fraction is a fraction"),
    ({"min_piece_fraction": 1.0}, "min_piece_fraction is a fraction"),
    ({"bridge_floor": 1.0}, "bridge_floor is an occupancy probability"),
    ({"bridge_floor": -0.1}, "bridge_floor is an occupancy probability"),
    ({"bridge_min_fraction": 1.0}, "bridge_min_fraction is a fraction"),
])
def test_bad_cleanup_config_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DecodeConfig(**kwargs)
