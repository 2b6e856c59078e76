"""MMD-CD / COV-CD / 1-NNA-CD on tiny seeded point sets with known answers."""

import numpy as np
import pytest

from backend.generate.metrics import chamfer_matrix, generative_metrics, normalize_points, surface_points
from backend.geometry.mesh import Mesh


def _spheres(rng: np.random.Generator, count: int, points: int = 64, jitter: float = 0.02) -> np.ndarray:
    """[count, points, 3]: noisy spheres with radii uniform in [0.5, 1]."""
    directions = rng.normal(size=(count, points, 3))
    directions /= np.linalg.norm(directions, axis=2, keepdims=True)
    radii = rng.uniform(0.5, 1.0, size=(count, 1, 1))
    return (directions * radii + rng.normal(scale=jitter, size=directions.shape)).astype(np.float32)


def _square() -> Mesh:
    """The unit square [0, 1]^2 at z = 0 as two triangles of area 1/2, plus an unused far vertex."""
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [9, 9, 9]], dtype=np.float32)
    return Mesh(vertices=vertices, faces=np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int32))


def test_chamfer_to_itself_is_zero_and_matrix_is_symmetric():
    clouds = _spheres(np.random.default_rng(0), 5)
    self_matrix = chamfer_matrix(clouds)
    assert self_matrix.shape == (5, 5) and self_matrix.dtype == np.float64
    np.testing.assert_allclose(np.diag(self_matrix), 0.0, atol=1e-6)
    np.testing.assert_allclose(self_matrix, self_matrix.T)
    assert (self_matrix[~np.eye(5, dtype=bool)] > 1e-4).all()
    # The same values through the general (non-self) path, with a chunk that splits the set unevenly.
    np.testing.assert_allclose(chamfer_matrix(clouds, clouds, chunk=2), self_matrix, atol=1e-6)


def test_chamfer_of_a_small_translation_is_twice_its_squared_length():
    # Points 1 apart, shifted by |t| = 0.1 < 0.5: every nearest neighbour is the shifted twin,
    # so each direction contributes |t|^2 and CD = 2 |t|^2.
    grid = np.stack(np.meshgrid(*[np.arange(4.0)] * 3, indexing="ij"), axis=-1).reshape(1, -1, 3)
    shift = np.array([0.06, -0.08, 0.0])
    cd = chamfer_matrix(grid, grid + shift)
    np.testing.assert_allclose(cd, [[2 * 0.01]], rtol=1e-4)


def test_identical_sets_have_zero_mmd_and_full_coverage():
    clouds = _spheres(np.random.default_rng(1), 8)
    result = generative_metrics(clouds, clouds.copy())
    assert result["mmd"] == pytest.approx(0.0, abs=1e-6)
    assert result["cov"] == 1.0
    assert (result["n_generated"], result["n_reference"]) == (8, 8)


def test_mode_collapse_covers_one_reference_and_is_easy_to_tell_apart():
    rng = np.random.default_rng(2)
    reference = _spheres(rng, 10)
    # One fresh shape from the same distribution, repeated: not a copy of a reference (that would tie
    # every copy with its twin in the reference set and make the 1-NN vote arbitrary).
    collapsed = np.repeat(_spheres(rng, 1), 10, axis=0)
    result = generative_metrics(collapsed, reference)
    assert result["cov"] == pytest.approx(1 / 10)
    assert result["one_nna"] >= 0.9


def test_far_apart_sets_are_perfectly_separable():
    rng = np.random.default_rng(3)
    result = generative_metrics(_spheres(rng, 6) + 10.0, _spheres(rng, 7))
    assert result["one_nna"] == 1.0
    assert result["mmd"] > 50.0  # about 2 * 10^2 * 3 = 600: every reference is far from every generated shape


def test_sets_from_one_distribution_are_near_chance():
    rng = np.random.default_rng(4)
    result = generative_metrics(_spheres(rng, 40, points=48), _spheres(rng, 40, points=48))
    assert 0.3 <= result["one_nna"] <= 0.7
    assert result["cov"] > 0.3


def test_surface_points_are_uniform_on_the_triangles_and_seeded():
    points = surface_points(_square(), count=4000, rng=np.random.default_rng(5))
    assert points.shape == (4000, 3) and points.dtype == np.float32
    assert np.all(points[:, 2] == 0.0) and points[:, :2].min() >= 0.0 and points[:, :2].max() <= 1.0
    # Uniform on the square: each quadrant holds about a quarter, so the mean is near the centre.
    np.testing.assert_allclose(points[:, :2].mean(axis=0), [0.5, 0.5], atol=0.03)
    np.testing.assert_array_equal(surface_points(_square(), 16), surface_points(_square(), 16))


def test_surface_points_weight_faces_by_area():
    # A big triangle (area 50) and a small one (area 0.5) far away: about 1% of samples land on the small one.
    vertices = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [100, 0, 0], [101, 0, 0], [100, 1, 0]], dtype=np.float32)
    mesh = Mesh(vertices=vertices, faces=np.array([[0, 1, 2], [3, 4, 5]], dtype=np.int32))
    points = surface_points(mesh, count=20000, rng=np.random.default_rng(6))
    assert (points[:, 0] >= 100).mean() == pytest.approx(0.5 / 50.5, abs=0.004)


def test_normalize_points_fits_each_cloud_in_the_unit_sphere():
    clouds = _spheres(np.random.default_rng(7), 3) * np.array([3.0, 1.0, 1.0], dtype=np.float32) + 5.0
    out = normalize_points(clouds)
    radii = np.linalg.norm(out, axis=2).max(axis=1)
    np.testing.assert_allclose(radii, 1.0, rtol=1e-5)
    np.testing.assert_allclose(0.5 * (out.min(axis=1) + out.max(axis=1)), 0.0, atol=1e-5)
    np.testing.assert_allclose(normalize_points(clouds[0]), out[0])


@pytest.mark.parametrize(
    "generated, reference, match",
    [
        (np.zeros((2, 8, 2)), np.zeros((2, 8, 3)), r"generated must be a set of point clouds \[N, P, 3\]"),
        (np.zeros((8, 3)), np.zeros((2, 8, 3)), r"generated must be a set of point clouds"),
        (np.zeros((0, 8, 3)), np.zeros((2, 8, 3)), "generated is empty"),
        (np.zeros((2, 8, 3)), np.zeros((2, 0, 3)), "reference is empty"),
        (np.zeros((2, 8, 3)), np.zeros((2, 9, 3)), "point counts differ"),
        (np.full((2, 8, 3), np.nan), np.zeros((2, 8, 3)), "NaN or infinite"),
        (np.zeros((1, 8, 3)), np.zeros((1, 8, 3)), "at least 3 shapes"),
    ],
)
def test_bad_sets_are_rejected(generated, reference, match):
    with pytest.raises(ValueError, match=match):
        generative_metrics(generated, reference)


def test_bad_chamfer_and_sampling_inputs_are_rejected():
    with pytest.raises(ValueError, match="point counts differ"):
        chamfer_matrix(np.zeros((1, 4, 3)), np.zeros((1, 5, 3)))
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        chamfer_matrix(np.zeros((1, 4, 3)), chunk=0)
    with pytest.raises(ValueError, match="count must be >= 1"):
        surface_points(_square(), count=0)
    with pytest.raises(ValueError, match="zero surface area"):
        surface_points(Mesh(vertices=np.zeros((3, 3), np.float32), faces=np.array([[0, 1, 2]], np.int32)))
    with pytest.raises(ValueError, match="non-empty"):
        surface_points(Mesh(vertices=np.zeros((3, 3), np.float32), faces=np.zeros((0, 3), np.int32)))
    with pytest.raises(ValueError, match="all coincide"):
        normalize_points(np.ones((4, 3)))
