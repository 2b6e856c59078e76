"""The spectral pattern classifier that judges restyles: each class recognised on synthetic images (clean, and
with noise, shading and a round mask as a render has), stripe rotation read, bad input refused."""

from __future__ import annotations

import numpy as np
import pytest

from backend.stylize.pattern_check import classify_pattern, pattern_label, synthetic_pattern

SIZE = 192
YY, XX = np.mgrid[0:SIZE, 0:SIZE]
DISC = np.hypot(YY - SIZE / 2, XX - SIZE / 2) < 0.4 * SIZE


def rendered_like(image: np.ndarray, seed: int = 0) -> np.ndarray:
    """Pixel noise and a shading ramp, as a lit render adds."""
    noise = 0.06 * np.random.default_rng(seed).standard_normal(image.shape)
    return np.clip(image + noise, 0, 1) * (0.55 + 0.45 * XX / SIZE)[..., None]


@pytest.mark.parametrize("pattern", ["stripes", "checks", "dots", "waves", "plain"])
@pytest.mark.parametrize("angle, period", [(0, 20), (30, 36), (45, 28)])
def test_each_pattern_is_recognised(pattern, angle, period):
    image = synthetic_pattern(pattern, SIZE, period, angle)
    assert classify_pattern(image).pattern == pattern
    assert classify_pattern(rendered_like(image), DISC).pattern == pattern


@pytest.mark.parametrize("angle", range(0, 180, 15))
def test_stripe_rotation_is_read(angle):
    reading = classify_pattern(rendered_like(synthetic_pattern("stripes", SIZE, 24, angle)), DISC)
    assert reading.pattern == "stripes"
    assert min(abs(reading.angle_deg - angle), 180 - abs(reading.angle_deg - angle)) <= 5.0
    assert abs(reading.period_px - 24) <= 4


def test_labels_tell_stripe_angles_apart():
    labels = {classify_pattern(synthetic_pattern("stripes", SIZE, 24, a)).label for a in (0, 45, 90, 135)}
    assert labels == {"stripes@0", "stripes@45", "stripes@90", "stripes@135"}
    assert pattern_label("checks") == "checks"
    with pytest.raises(ValueError, match="angle"):
        pattern_label("stripes")


def test_the_demo_stripes_are_diagonal_stripes():
    # tools/demo_scene.stripes_png: three colours, bands constant along x + y (rows run down): rising bands.
    band = ((XX + YY) // 24) % 3
    colours = np.array([[230, 120, 30], [40, 90, 200], [25, 25, 30]], np.uint8)
    assert classify_pattern(colours[band]).label == "stripes@45"


def test_a_noisy_colour_mix_is_irregular():
    mix = np.random.default_rng(1).random((SIZE, SIZE, 3))
    coarse = np.kron(np.random.default_rng(2).random((SIZE // 6, SIZE // 6, 3)), np.ones((6, 6, 1)))
    assert classify_pattern(mix).pattern in ("irregular", "plain")
    assert classify_pattern(coarse, DISC).pattern == "irregular"


def test_bad_input_is_refused():
    image = synthetic_pattern("stripes", 64, 16)
    with pytest.raises(ValueError, match="same height and width"):
        classify_pattern(image, np.ones((32, 32), bool))
    with pytest.raises(ValueError, match="render the object larger"):
        classify_pattern(image, np.zeros((64, 64), bool))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        classify_pattern(np.zeros((64, 64, 2)))
    with pytest.raises(ValueError, match="unknown pattern"):
        synthetic_pattern("zigzag")
    with pytest.raises(ValueError, match="period"):
        synthetic_pattern("stripes", 64, period=2)
