"""Colours and patterns of world shapes: a named base colour and a tileable pattern texture.

Every shape is textured, plain ones too (a flat tile): the renderer samples texture bytes as they
are but takes vertex colours as linear values, so mixing the two would make "plain red" and the red
of a striped shape render differently. One path keeps a colour name meaning one look.

The texture is one period of the pattern; the shape's UVs (see `parts.assemble`) repeat it a few
times across the object, and the GLB's sampler repeats it the same way in Blender.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (205, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (240, 210, 35),
    "green": (45, 150, 55),
    "blue": (35, 80, 205),
    "purple": (125, 50, 175),
    "pink": (245, 125, 185),
    "brown": (115, 70, 35),
}
"""Named base colours, sRGB bytes: eight hues that stay apart under shading."""

ACCENTS: dict[str, tuple[str, ...]] = {
    "red": ("white", "lighter", "darker"),
    "orange": ("white", "lighter"),  # darker orange is brown
    "yellow": ("white", "darker"),  # lighter yellow is nearly white
    "green": ("white", "lighter", "darker"),
    "blue": ("white", "lighter", "darker"),
    "purple": ("white", "lighter", "darker"),
    "pink": ("white", "darker"),  # lighter pink is nearly white
    "brown": ("white", "lighter", "darker"),
}
"""Which second colours a pattern on each base may use: tones that do not read as another colour name."""

PATTERNS: tuple[str, ...] = ("plain", "stripes", "checks", "dots")
"""Pattern names (labels)."""

PATTERN_ADJECTIVES: dict[str, str] = {"plain": "plain", "stripes": "striped", "checks": "checked", "dots": "dotted"}
"""How captions say each pattern."""

WHITE = (242, 242, 238)


@dataclass(frozen=True)
class Appearance:
    """How a shape is coloured."""

    colour: str
    """Base colour name, a key of COLOURS."""
    pattern: str
    """One of PATTERNS."""
    base_rgb: tuple[int, int, int]
    """The base colour actually used (the named colour with a small brightness jitter), sRGB bytes."""
    accent: str
    """The pattern's second colour: "white", "lighter", "darker", or "none" for plain."""
    accent_rgb: tuple[int, int, int]
    """The second colour, sRGB bytes (equal to base_rgb for plain)."""
    coverage: float
    """Pattern proportion: stripe width or dot radius as a fraction of the period."""
    periods: float
    """Pattern periods per bounding radius of the shape."""
    offset: tuple[float, float]
    """UV offset of the pattern, in tiles."""


def _tone(rgb: np.ndarray, accent: str) -> np.ndarray:
    if accent == "white":
        return np.array(WHITE, dtype=np.float64)
    if accent == "lighter":
        return rgb + 0.55 * (255.0 - rgb)
    return rgb * 0.5  # darker


def sample_appearance(rng: np.random.Generator, colour: str | None = None, pattern: str | None = None) -> Appearance:
    """Draws an appearance; `colour` / `pattern` fix those labels (validated), the rest is seeded by `rng`.

    Always consumes the same number of draws from `rng`, so fixing a label changes nothing else.
    """
    names = list(COLOURS)
    drawn_colour = names[int(rng.integers(len(names)))]
    drawn_pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
    if colour is not None and colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; choose one of {', '.join(COLOURS)}")
    if pattern is not None and pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; choose one of {', '.join(PATTERNS)}")
    colour = colour or drawn_colour
    pattern = pattern or drawn_pattern
    brightness = rng.uniform(0.9, 1.08)
    accent_pick = rng.random()
    coverage = rng.uniform(0.4, 0.5) if pattern != "dots" else rng.uniform(0.22, 0.32)
    periods = rng.uniform(2.5, 3.5)
    offset = (float(rng.random()), float(rng.random()))
    base = np.clip(np.array(COLOURS[colour], dtype=np.float64) * brightness, 0, 255)
    if pattern == "plain":
        accent, accent_rgb = "none", base
    else:
        choices = ACCENTS[colour]
        accent = choices[min(int(accent_pick * len(choices)), len(choices) - 1)]
        accent_rgb = _tone(base, accent)
    as_bytes = lambda c: tuple(int(x) for x in np.round(np.clip(c, 0, 255)))  # noqa: E731
    return Appearance(colour, pattern, as_bytes(base), accent, as_bytes(accent_rgb), float(coverage),
                      float(periods), offset)


def pattern_texture(appearance: Appearance, tile: int = 64) -> np.ndarray:
    """One period of the pattern: [tile, tile, 3] uint8, row 0 at the top (v = 0); plain gives an 8x8 flat tile.

    stripes: horizontal bands (v varies, so bands run around upright parts); checks: 2x2 cells;
    dots: one round dot per tile. Edges are antialiased (4x4 supersampling).
    """
    base = np.array(appearance.base_rgb, dtype=np.float64)
    accent = np.array(appearance.accent_rgb, dtype=np.float64)
    if appearance.pattern == "plain":
        return np.broadcast_to(np.round(base).astype(np.uint8), (8, 8, 3)).copy()
    if tile < 8:
        raise ValueError(f"tile must be at least 8 texels, got {tile}")
    # Antialiased by 4x4 supersampling each texel.
    fine = 4 * tile
    centres = (np.arange(fine) + 0.5) / fine
    v, u = np.meshgrid(centres, centres, indexing="ij")
    c = appearance.coverage
    if appearance.pattern == "stripes":
        mask = v < c
    elif appearance.pattern == "checks":
        mask = (u < 0.5) != (v < 0.5)
    elif appearance.pattern == "dots":
        mask = np.hypot(u - 0.5, v - 0.5) < c
    else:
        raise ValueError(f"unknown pattern {appearance.pattern!r}; choose one of {', '.join(PATTERNS)}")
    weight = mask.astype(np.float64).reshape(tile, 4, tile, 4).mean(axis=(1, 3))
    image = base + weight[..., None] * (accent - base)
    return np.round(image).astype(np.uint8)
