"""Which pattern an image shows, read from the power spectrum of its luminance: a judge of restyles that shares
nothing with the losses a restyle optimises (no feature network, no palette).

The luminance inside the object's mask is high-passed (a local mean, taken by normalised convolution, is
subtracted, which removes the shading of a lit render), tapered toward the mask's edge (so the silhouette adds
no spectral lines) and Fourier-transformed. The peaks of its power spectrum in a band of periods tell the
pattern:

- one dominant peak (with its harmonics on the same ray): **stripes**, whose bands run perpendicular to it;
- a dominant peak with sidebands offset perpendicular to it (a phase-modulated band, sum over m of J_m):
  **waves**;
- two equally strong orthogonal peaks and nothing at their sum or difference: **checks** (a 50 % checkerboard
  has no even harmonics, so (1, 1) and (1, -1) stand alone);
- two comparable, non-collinear peaks whose sum or difference is a peak too (a square or hexagonal lattice):
  **dots**;
- little contrast: **plain**; contrast without a peak that holds a good share of the band's energy, or peaks
  in no arrangement above: **irregular** (a noisy colour mix; it matches no style).

Angles are those of the bands as seen, in degrees in [0, 180): 0 horizontal, 45 rising to the right, 90
vertical, 135 falling to the right (y up, as the image is displayed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

PATTERN_CLASSES = ("plain", "stripes", "checks", "dots", "waves", "irregular")
"""What `classify_pattern` can answer; "irregular" is structure that is none of the patterns."""


@dataclass(frozen=True)
class PatternCheckConfig:
    """Thresholds of the spectral pattern classifier (set on synthetic patterns, `tests/stylize/test_pattern_check.py`)."""

    min_period: float = 6.0
    """Shortest period, in pixels, a pattern may have (finer structure is render noise)."""
    max_period_fraction: float = 0.5
    """Longest period as a fraction of the mask's diameter (at least two periods must fit)."""
    plain_contrast: float = 0.03
    """Below this standard deviation of the luminance in the band of periods (in [0, 1] units) the image is plain."""
    min_structure: float = 0.25
    """The significant peaks must hold at least this share of the band's energy, else irregular."""
    significant: float = 0.12
    """A peak counts when it holds at least this fraction of the strongest peak's energy."""
    stripe_dominance: float = 0.55
    """Stripes: no other (non-harmonic) peak holds more than this fraction of the main peak's energy... unless
    it is a sideband (waves) or a lattice partner (checks, dots)."""
    equal_ratio: float = 0.45
    """Checks and dots: the second lattice peak holds at least this fraction of the first's energy."""
    angle_tolerance_deg: float = 15.0
    """Orthogonality (checks) and collinearity (harmonics) tolerance, in degrees."""
    lattice_sum: float = 0.08
    """Dots: the sum or difference of the two lattice peaks holds at least this fraction of the first's energy;
    checks: it holds less."""


@dataclass
class PatternReading:
    """What `classify_pattern` found."""

    pattern: str
    """One of PATTERN_CLASSES."""
    angle_deg: float | None
    """Stripes and waves: the bands' direction in [0, 180) (0 horizontal, 45 rising to the right); else None."""
    period_px: float | None
    """The main peak's period in pixels (None for plain)."""
    contrast: float
    """Standard deviation of the luminance inside the mask in the band of periods (Parseval)."""
    structure: float
    """The share of the band's energy in the significant peaks."""
    peaks: list[tuple[float, float, float]] = field(default_factory=list)
    """The significant peaks, strongest first: (wave-vector angle in degrees [0, 180), period px, energy share)."""

    @property
    def label(self) -> str:
        """The class with the stripes' angle bucket: "stripes@0", "stripes@45", ..., "checks", "plain"."""
        return pattern_label(self.pattern, self.angle_deg)


def pattern_label(pattern: str, angle_deg: float | None = None) -> str:
    """"stripes@<nearest of 0, 45, 90, 135>" for stripes (the angle is required), else the pattern itself."""
    if pattern != "stripes":
        return pattern
    if angle_deg is None:
        raise ValueError("stripes need their angle to be labelled")
    return f"stripes@{int(round(angle_deg / 45.0)) % 4 * 45}"


def luminance(image: np.ndarray) -> np.ndarray:
    """[H, W, 3|4] float in [0, 1] (or uint8) -> [H, W] float64 Rec. 601 luma in [0, 1]; [H, W] passes through."""
    image = np.asarray(image)
    scale = 255.0 if image.dtype == np.uint8 else 1.0
    image = image.astype(np.float64) / scale
    if image.ndim == 2:
        return image
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"image must be [H, W], [H, W, 3] or [H, W, 4], got shape {image.shape}")
    return image[..., :3] @ np.array([0.299, 0.587, 0.114])


def _prepared(lum: np.ndarray, mask: np.ndarray, config: PatternCheckConfig) -> tuple[np.ndarray, float, float]:
    """The high-passed, tapered luminance, its contrast, and the mask's diameter in pixels."""
    area = float(mask.sum())
    diameter = 2.0 * math.sqrt(area / math.pi)
    # The local mean must keep every period the band admits: a Gaussian of sigma P_max / 2 passes a period
    # P_max with gain 1 - exp(-pi^2 / 2) = 0.993.
    sigma = max(2.0, 0.5 * config.max_period_fraction * diameter)
    weight = mask.astype(np.float64)
    local = ndimage.gaussian_filter(lum * weight, sigma) / np.maximum(ndimage.gaussian_filter(weight, sigma), 1e-6)
    high = (lum - local) * weight
    contrast = float(np.sqrt((high**2).sum() / max(area, 1.0)))
    # Taper over a few pixels inside the silhouette so the mask's edge adds no lines to the spectrum.
    ramp = max(2.0, 0.06 * diameter)
    inside = ndimage.distance_transform_edt(mask)
    taper = 0.5 - 0.5 * np.cos(np.pi * np.clip(inside / ramp, 0.0, 1.0))
    return high * taper, contrast, diameter


def _peaks(power: np.ndarray, band: np.ndarray, radius: float, count: int = 8) -> list[tuple[int, int, float]]:
    """Local maxima of `power` inside `band` on the upper half plane, with the energy within `radius` bins
    (both half planes: the spectrum of a real image is symmetric), strongest first: (ky, kx, energy)."""
    n = power.shape[0]
    centre = n // 2
    masked = np.where(band, power, 0.0)
    maxima = (masked == ndimage.maximum_filter(masked, size=3)) & (masked > 0)
    ky, kx = np.nonzero(maxima)
    keep = (ky < centre) | ((ky == centre) & (kx > centre))  # one of each symmetric pair (rows run downward)
    ky, kx = ky[keep], kx[keep]
    order = np.argsort(masked[ky, kx])[::-1]
    yy, xx = np.mgrid[0:n, 0:n]
    found: list[tuple[int, int, float]] = []
    for y, x in zip(ky[order], kx[order]):
        if any(math.hypot(y - fy, x - fx) <= 1.5 * radius for fy, fx, _ in found):
            continue  # a shoulder of a peak already taken
        near = np.hypot(yy - y, xx - x) <= radius
        found.append((int(y), int(x), float(masked[near].sum())))
        if len(found) == count:
            break
    return sorted(found, key=lambda p: -p[2])


def classify_pattern(image: np.ndarray, mask: np.ndarray | None = None,
                     config: PatternCheckConfig | None = None) -> PatternReading:
    """The pattern `image` shows inside `mask`.

    image: [H, W, 3|4] float in [0, 1] or uint8 (a render, or a style image), or [H, W] luminance; mask: [H, W]
    bool, the object's pixels (None: the whole image). Raises ValueError for mismatched shapes or a mask of
    fewer than 16 x 16 pixels.
    """
    config = config or PatternCheckConfig()
    lum = luminance(image)
    mask = np.ones(lum.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != lum.shape:
        raise ValueError(f"mask {mask.shape} and image {lum.shape[:2]} must have the same height and width")
    if mask.sum() < 256:
        raise ValueError(f"the mask covers {int(mask.sum())} pixels; at least 256 (16 x 16) are needed to read a "
                         "pattern: render the object larger")
    signal, contrast, diameter = _prepared(lum, mask, config)
    n = 1 << int(math.ceil(math.log2(max(lum.shape))))
    padded = np.zeros((n, n))
    padded[:lum.shape[0], :lum.shape[1]] = signal
    power = np.abs(np.fft.fftshift(np.fft.fft2(padded))) ** 2
    centre = n // 2
    yy, xx = np.mgrid[0:n, 0:n]
    radial = np.hypot(yy - centre, xx - centre) / n  # cycles per pixel
    low = 1.0 / max(config.max_period_fraction * diameter, 2 * config.min_period)
    band = (radial >= low) & (radial <= 1.0 / config.min_period)
    # Contrast in the band of periods only (Parseval), so pixel noise and shading do not count as pattern.
    contrast = math.sqrt(float(power[band].sum()) / n**2 / float(mask.sum()))
    if contrast < config.plain_contrast:
        return PatternReading("plain", None, None, contrast, 0.0)
    # A peak is as wide as the spectrum of the window: about n / diameter bins.
    radius = max(1.5, 1.2 * n / diameter)
    peaks = _peaks(power, band, radius)
    # Energies as shares of the half-plane band energy (peaks were summed over one half only).
    total = max(float(power[band].sum()) / 2.0, 1e-12)
    peaks = [(y, x, e / total) for y, x, e in peaks]
    if not peaks:
        return PatternReading("irregular", None, None, contrast, 0.0)
    first = peaks[0][2]
    strong = [p for p in peaks if p[2] >= config.significant * first]
    vectors = [np.array([centre - y, x - centre], dtype=np.float64) for y, x, _ in strong]  # (up, right)
    summary = [(_angle(v), n / np.linalg.norm(v), e) for v, (_, _, e) in zip(vectors, strong)]
    structure = float(sum(e for _, _, e in strong))
    main = vectors[0]
    period = float(n / np.linalg.norm(main))
    reading = lambda pattern, angle=None: PatternReading(  # noqa: E731
        pattern, angle, period, contrast, structure, summary)
    if structure < config.min_structure:
        return reading("irregular")
    band_angle = (_angle(main) + 90.0) % 180.0
    others = [(v, e) for v, (_, _, e) in zip(vectors[1:], strong[1:]) if not _harmonic(v, main, config)]
    if not others:
        return reading("stripes", band_angle)
    second, second_energy = others[0]
    ratio = second_energy / first
    norm_ratio = np.linalg.norm(second) / np.linalg.norm(main)
    separation = _separation(main, second)
    if ratio >= config.equal_ratio and 0.7 <= norm_ratio <= 1.45 and separation >= 30.0:
        sums = [_energy_at(power, centre, main + sign * second, radius) / (2.0 * total) for sign in (1, -1)]
        if max(sums) >= config.lattice_sum * first:
            return reading("dots")
        if abs(separation - 90.0) <= config.angle_tolerance_deg and 0.8 <= norm_ratio <= 1.25:
            return reading("checks")
    sidebands = [(v, e) for v, e in others if _sideband(v, main)]
    if sidebands and sum(e for _, e in sidebands) >= 0.25 * first and len(sidebands) >= len(others) / 2:
        return reading("waves", band_angle)
    if ratio < config.stripe_dominance:
        return reading("stripes", band_angle)
    return reading("irregular")


def _angle(vector: np.ndarray) -> float:
    """The direction of an (up, right) wave vector in degrees in [0, 180)."""
    return math.degrees(math.atan2(vector[0], vector[1])) % 180.0


def _separation(a: np.ndarray, b: np.ndarray) -> float:
    """The angle between two lines (directions mod 180) in degrees in [0, 90]."""
    diff = abs(_angle(a) - _angle(b)) % 180.0
    return min(diff, 180.0 - diff)


def _harmonic(vector: np.ndarray, main: np.ndarray, config: PatternCheckConfig) -> bool:
    """Whether `vector` is (nearly) 2, 3 or 4 times `main` (same line): a harmonic of the same bands."""
    multiple = np.linalg.norm(vector) / np.linalg.norm(main)
    return _separation(vector, main) <= config.angle_tolerance_deg / 2 and abs(multiple - round(multiple)) < 0.2 \
        and round(multiple) >= 2


def _sideband(vector: np.ndarray, main: np.ndarray) -> bool:
    """Whether `vector` = main + an offset perpendicular to main (or -vector is: the half plane folds signs),
    with the offset between 0.15 and 0.75 times |main|: a sideband of a phase-modulated band."""
    length2 = float(main @ main)
    for v in (vector, -vector):
        offset = v - main
        along = float(offset @ main) / length2
        across = math.sqrt(max(float(offset @ offset) / length2 - along**2, 0.0))
        if abs(along) <= 0.12 and 0.15 <= across <= 0.75:
            return True
    return False


def _energy_at(power: np.ndarray, centre: int, vector: np.ndarray, radius: float) -> float:
    """Energy of `power` within `radius` bins of the (up, right) wave vector and of its mirror, halved."""
    n = power.shape[0]
    y, x = centre - vector[0], centre + vector[1]
    if not (0 <= y < n and 0 <= x < n):
        return 0.0
    yy, xx = np.mgrid[0:n, 0:n]
    near = np.hypot(yy - y, xx - x) <= radius
    return float(power[near].sum())


# ----------------------------------------------------------------------------------------------- synthetic


SYNTHETIC_PATTERNS = ("stripes", "checks", "dots", "waves", "plain")
"""What `synthetic_pattern` draws."""


def synthetic_pattern(pattern: str, size: int = 256, period: float = 48.0, angle_deg: float = 0.0,
                      colours=((0.9, 0.47, 0.12), (0.16, 0.35, 0.78)), supersample: int = 3) -> np.ndarray:
    """A style or test image: [size, size, 3] float32 in [0, 1], antialiased by supersampling.

    stripes: bands at `angle_deg` (0 horizontal, 45 rising to the right), half a period each; checks: square
    cells of half a period along the rotated axes; dots: one disc (radius 0.3 period) per period on a square
    lattice; waves: bands at `angle_deg` displaced sideways by 0.2 period along a sine of 2 periods; plain:
    the first colour. `colours`: two display RGB triples (the background, the pattern).
    """
    if pattern not in SYNTHETIC_PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; choose one of {', '.join(SYNTHETIC_PATTERNS)}")
    if size < 16 or period < 4:
        raise ValueError(f"size must be >= 16 and period >= 4 pixels, got {size} and {period}")
    back, front = (np.asarray(c, dtype=np.float32) for c in colours)
    fine = size * supersample
    rows, cols = (np.mgrid[0:fine, 0:fine] + 0.5) / supersample
    theta = math.radians(angle_deg)
    up, right = size / 2 - rows, cols - size / 2  # y up, as displayed
    across = (up * math.cos(theta) - right * math.sin(theta)) / period  # perpendicular to the bands
    along = (up * math.sin(theta) + right * math.cos(theta)) / period
    if pattern == "stripes":
        on = np.mod(across, 1.0) < 0.5
    elif pattern == "waves":
        on = np.mod(across + 0.2 * np.sin(np.pi * along), 1.0) < 0.5
    elif pattern == "checks":
        on = (np.mod(across, 1.0) < 0.5) != (np.mod(along, 1.0) < 0.5)
    elif pattern == "dots":
        on = np.hypot(np.mod(across, 1.0) - 0.5, np.mod(along, 1.0) - 0.5) < 0.3
    else:
        on = np.zeros_like(across, dtype=bool)
    weight = on.astype(np.float32).reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    return (back + weight[..., None] * (front - back)).astype(np.float32)
