"""Shape families: seeded builders of furniture and objects from closed parametric parts.

A family is a `Family` record in the plain `FAMILIES` registry: its attribute labels (each with a
small set of values), a builder `build(rng, attributes) -> list[Part]` in metres (glTF frame: Y up,
front = +Z, standing on y = 0, centred on the Y axis), and how captions phrase its attributes.

Silhouettes are kept characteristic so categories stay apart at 64 px from random views (chairs
have a back, tables a wide top on legs, lamps a shade on a pole, mugs a handle, vases a curved
hollow body, shelves stacked boards, beds a long mattress with a headboard, sofas a low deep block
with a back along the long side); proportions vary continuously within each family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from backend.world.parts import Part, beam, box, cylinder, ellipsoid, lathe, rotation, torus

HEIGHTS = ("short", "medium", "tall")
"""Height classes; every family has a "height" attribute (it sets proportions, not absolute size)."""
HEIGHT_WORDS = {"short": "short", "medium": "medium-height", "tall": "tall"}
"""How captions say each height class."""
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}

Builder = Callable[[np.random.Generator, dict], list[Part]]
Phrases = Callable[[dict, set], list[str]]


@dataclass(frozen=True)
class Family:
    """One category of shapes."""

    name: str
    """Category label and the noun captions use ("chair")."""
    attributes: dict[str, tuple]
    """Attribute name -> its possible values (str or int), e.g. {"legs": (3, 4)}; includes "height"."""
    build: Builder
    """build(rng, attributes) -> closed parts in metres; draws all continuous proportions from rng."""
    adjectives: dict[str, dict] = field(default_factory=dict)
    """Attributes said as adjectives before the noun besides height: name -> {value: word}."""
    phrases: Phrases | None = None
    """phrases(attributes, mention) -> noun phrases ("four thin legs") for the mentioned attribute names."""


FAMILIES: dict[str, Family] = {}
"""The registry: category name -> Family. Use `register_family` to add one."""


def register_family(family: Family) -> Family:
    """Adds a family to FAMILIES; a duplicate name is an error."""
    if family.name in FAMILIES:
        raise ValueError(f"a family named {family.name!r} is already registered; pick another name")
    if "height" not in family.attributes or tuple(family.attributes["height"]) != HEIGHTS:
        raise ValueError(f"family {family.name!r} must have a 'height' attribute with values {HEIGHTS}")
    FAMILIES[family.name] = family
    return family


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _legs_phrase(a: dict, mention: set, noun: str = "leg") -> list[str]:
    """'four thin legs' from the "legs" and "thickness" attributes, as far as they are mentioned."""
    words = []
    if "legs" in mention:
        words.append(NUMBER_WORDS[a["legs"]])
    if "thickness" in mention:
        words.append(a["thickness"])
    if not words:
        return []
    plural = noun if "legs" in mention and a["legs"] == 1 else noun + "s"
    return [" ".join(words + [plural])]


def _yes_no(a: dict, mention: set, key: str, noun: str, article: str = "") -> list[str]:
    if key not in mention:
        return []
    return [f"{article}{noun}" if a[key] == "yes" else f"no {noun}"]


def _recline(parts: list[Part], pivot, degrees: float) -> list[Part]:
    """Tilts parts backwards (toward -Z) by `degrees` about a horizontal X axis through `pivot`."""
    matrix = rotation("x", -degrees)
    pivot = np.asarray(pivot, dtype=np.float64)
    return [p.transformed(matrix, pivot - matrix @ pivot) for p in parts]


# ---------------------------------------------------------------------------------------------- chair

def build_chair(rng: np.random.Generator, a: dict) -> list[Part]:
    width, depth = _u(rng, 0.42, 0.55), _u(rng, 0.40, 0.50)
    seat_h, back_h = {
        "short": (_u(rng, 0.32, 0.40), _u(rng, 0.22, 0.30)),
        "medium": (_u(rng, 0.42, 0.48), _u(rng, 0.40, 0.50)),
        "tall": (_u(rng, 0.45, 0.55), _u(rng, 0.68, 0.85)),
    }[a["height"]]
    thick = a["thickness"] == "thick"
    leg_t = _u(rng, 0.05, 0.07) if thick else _u(rng, 0.022, 0.032)
    seat_t = _u(rng, 0.06, 0.09) if thick else _u(rng, 0.025, 0.04)
    round_legs = bool(rng.random() < 0.5)
    splay = _u(rng, 0.0, 0.04)
    recline = _u(rng, 2.0, 12.0)
    arm_h = _u(rng, 0.18, 0.25)
    count = int(rng.integers(3, 6))  # slats or rails

    parts = [box((0, seat_h - seat_t / 2, 0), (width, seat_t, depth), "seat")]
    x, z = width / 2 - leg_t / 2, depth / 2 - leg_t / 2
    feet = [(-x, z), (x, z), (-x, -z), (x, -z)] if a["legs"] == 4 else [(-x, z), (x, z), (0.0, -z)]
    for fx, fz in feet:
        out = np.array([np.sign(fx), 0.0, np.sign(fz)]) * splay
        parts.append(beam((fx + out[0], 0.0, fz + out[2]), (fx, seat_h - seat_t / 2, fz), leg_t, "leg", round_legs))

    # The back, built upright on the seat's rear edge, then reclined.
    top = seat_h + back_h
    post_t = max(leg_t * 0.8, 0.022)
    bz = -depth / 2 + post_t / 2
    back = [beam((sx, seat_h - 0.01, bz), (sx, top, bz), post_t, "post", round_legs) for sx in (-x, x)]
    inner = width - 2 * post_t
    if a["back"] == "solid":
        panel_low = seat_h + back_h * _u(rng, 0.15, 0.35)
        back.append(box((0, (panel_low + top) / 2, bz), (inner + 0.01, top - panel_low, post_t * 0.7), "back"))
    elif a["back"] == "slatted":
        rail_t = post_t * 1.2
        back.append(box((0, top - rail_t / 2, bz), (inner + 0.01, rail_t, post_t), "rail"))
        slat_w = inner / (2 * count + 1)
        for k in range(count):
            sx = -inner / 2 + slat_w * (2 * k + 1.5)
            back.append(box((sx, (seat_h + top - rail_t) / 2, bz), (slat_w, top - rail_t - seat_h, post_t * 0.6), "slat"))
    else:  # ladder: horizontal rails
        rail_t = min(back_h / (2 * count + 1), 0.06)
        for k in range(count):
            ry = top - rail_t / 2 - k * (back_h * 0.8 / count)
            back.append(box((0, ry, bz), (inner + 0.01, rail_t, post_t * 0.6), "rail"))
    parts += _recline(back, (0, seat_h, bz), recline)

    if a["armrests"] == "yes":
        arm_t = max(leg_t, 0.035)
        ay = seat_h + arm_h
        for sx in (-x, x):
            parts.append(box((sx, ay + arm_t / 4, 0.0), (arm_t, arm_t / 2, depth), "arm"))
            parts.append(beam((sx, seat_h - 0.01, depth / 2 - arm_t), (sx, ay, depth / 2 - arm_t), arm_t * 0.8,
                              "arm support", round_legs))
    return parts


def chair_phrases(a: dict, mention: set) -> list[str]:
    out = _yes_no(a, mention, "armrests", "armrests")
    if "back" in mention:
        out.append(f"a {a['back']} back")
    return out + _legs_phrase(a, mention)


# ---------------------------------------------------------------------------------------------- table

def build_table(rng: np.random.Generator, a: dict) -> list[Part]:
    shape = a["top"]
    if shape == "rectangular":
        width = _u(rng, 1.2, 1.7)
        depth = width * _u(rng, 0.5, 0.62)
    elif shape == "square":
        width = depth = _u(rng, 0.8, 1.05)
    else:
        width = depth = _u(rng, 0.8, 1.15)
    height = {"short": _u(rng, 0.34, 0.44), "medium": _u(rng, 0.72, 0.78), "tall": _u(rng, 1.0, 1.1)}[a["height"]]
    if a["height"] == "tall":  # bar tables are small
        width, depth = width * 0.7, depth * 0.7
    thick = a["thickness"] == "thick"
    top_t = _u(rng, 0.06, 0.09) if thick else _u(rng, 0.022, 0.035)
    leg_t = _u(rng, 0.07, 0.1) if thick else _u(rng, 0.03, 0.045)
    round_legs = bool(rng.random() < 0.5)
    apron = bool(rng.random() < 0.5)
    inset = _u(rng, 0.03, 0.08)

    parts = []
    under = height - top_t
    if shape == "round":
        parts.append(cylinder((0, under, 0), width / 2, top_t, 32, "top"))
    else:
        parts.append(box((0, height - top_t / 2, 0), (width, top_t, depth), "top"))
    legs = a["legs"]
    if legs == 1:
        column_r = leg_t * 0.9
        foot_r = 0.32 * min(width, depth)
        parts.append(cylinder((0, 0, 0), foot_r, 0.03, 24, "foot", top_radius=foot_r * 0.8))
        parts.append(cylinder((0, 0.02, 0), column_r, under - 0.015, 16, "column"))
        return parts
    if legs == 4 and shape != "round":
        x, z = width / 2 - inset - leg_t / 2, depth / 2 - inset - leg_t / 2
        feet = [(-x, -z), (x, -z), (-x, z), (x, z)]
    else:
        angles = np.radians([45, 135, 225, 315]) if legs == 4 else np.radians([90, 210, 330])
        rx, rz = (width / 2 - inset) * 0.8, (depth / 2 - inset) * 0.8
        feet = [(rx * np.cos(t), rz * np.sin(t)) for t in angles]
    for fx, fz in feet:
        parts.append(beam((fx, 0.0, fz), (fx, under + 0.005, fz), leg_t, "leg", round_legs))
    if apron and shape != "round" and legs == 4:
        rail_h = _u(rng, 0.06, 0.1)
        y = under - rail_h / 2
        x, z = feet[3]
        parts.append(box((0, y, -z), (2 * x, rail_h, leg_t * 0.4), "apron"))
        parts.append(box((0, y, z), (2 * x, rail_h, leg_t * 0.4), "apron"))
        parts.append(box((-x, y, 0), (leg_t * 0.4, rail_h, 2 * z), "apron"))
        parts.append(box((x, y, 0), (leg_t * 0.4, rail_h, 2 * z), "apron"))
    return parts


def table_phrases(a: dict, mention: set) -> list[str]:
    return _legs_phrase(a, mention)


# ----------------------------------------------------------------------------------------------- lamp

def build_lamp(rng: np.random.Generator, a: dict) -> list[Part]:
    pole_len, shade_r, shade_h = {
        "short": (_u(rng, 0.22, 0.32), _u(rng, 0.12, 0.16), _u(rng, 0.13, 0.18)),
        "medium": (_u(rng, 0.55, 0.75), _u(rng, 0.15, 0.2), _u(rng, 0.17, 0.23)),
        "tall": (_u(rng, 1.3, 1.6), _u(rng, 0.18, 0.24), _u(rng, 0.22, 0.3)),
    }[a["height"]]
    # Poles scale with the lamp so a thin one still shows at 64 px once the lamp fills the frame.
    reach = 1.0 + pole_len
    pole_r = reach * (_u(rng, 0.02, 0.026) if a["thickness"] == "thick" else _u(rng, 0.009, 0.012))
    base_r = shade_r * _u(rng, 0.7, 0.95)
    base_h = _u(rng, 0.02, 0.04)
    parts = []
    if a["base"] == "round":
        parts.append(cylinder((0, 0, 0), base_r, base_h, 24, "base", top_radius=base_r * _u(rng, 0.8, 1.0)))
    else:
        parts.append(box((0, base_h / 2, 0), (1.7 * base_r, base_h, 1.7 * base_r), "base"))
    shade_bottom = base_h + pole_len
    parts.append(cylinder((0, base_h - 0.005, 0), pole_r, pole_len + shade_h * 0.5, 12, "pole"))
    parts.append(ellipsoid((0, shade_bottom + shade_h * 0.25, 0), (shade_r * 0.3,) * 3, 12, 6, "bulb"))
    if a["shade"] == "cone":
        parts.append(cylinder((0, shade_bottom, 0), shade_r, shade_h, 32, "shade", top_radius=shade_r * _u(rng, 0.35, 0.55)))
    elif a["shade"] == "drum":
        parts.append(cylinder((0, shade_bottom, 0), shade_r, shade_h, 32, "shade", top_radius=shade_r * _u(rng, 0.92, 1.0)))
    else:  # dome: a flattened half sphere, open side down, closed by its flat bottom
        rows = 8
        phi = np.linspace(0.0, np.pi / 2, rows + 1)
        profile = [(0.0, 0.0)] + [(shade_r * np.cos(p), shade_h * 0.9 * np.sin(p)) for p in phi[:-1]] + [(0.0, shade_h * 0.9)]
        parts.append(lathe(profile, 32, sharp=(1,), name="shade", centre=(0, shade_bottom, 0)))
    return parts


def lamp_phrases(a: dict, mention: set) -> list[str]:
    out = []
    if "shade" in mention:
        out.append(f"a {a['shade']} shade")
    if "base" in mention:
        out.append(f"a {a['base']} base")
    if "thickness" in mention:
        out.append(f"a {a['thickness']} pole")
    return out


# ------------------------------------------------------------------------------------------------ mug

def build_mug(rng: np.random.Generator, a: dict) -> list[Part]:
    radius = _u(rng, 0.038, 0.05)
    height = 2 * radius * {"short": _u(rng, 0.7, 0.85), "medium": _u(rng, 1.05, 1.25), "tall": _u(rng, 1.5, 1.75)}[a["height"]]
    thick = a["thickness"] == "thick"
    wall = radius * (_u(rng, 0.14, 0.18) if thick else _u(rng, 0.06, 0.09))
    top_r = radius * _u(rng, 1.0, 1.1)
    floor = height * _u(rng, 0.08, 0.12)
    profile = [(0, 0), (radius * 0.95, 0), (radius, height * 0.03), (top_r, height), (top_r - wall, height),
               (top_r - wall - (top_r - radius) * (1 - floor / height), floor), (0, floor)]
    parts = [lathe(profile, 32, sharp=(1, 3, 4, 5), name="body")]
    grip_t = radius * (_u(rng, 0.2, 0.26) if thick else _u(rng, 0.1, 0.14))
    side = (radius + top_r) / 2  # body radius around mid-height
    span = height * _u(rng, 0.55, 0.7)  # handle height
    mid_y = height * _u(rng, 0.48, 0.55)
    if a["handle"] == "round":
        major = span / 2
        # Arc ends sink half a wall into the body, never into the cup's inside.
        reach = major * _u(rng, 0.7, 0.95)  # how far the loop sticks out
        centre_x = side + reach - major
        # Torus azimuth phi (from +Z toward +X) becomes, after turning it into the XY plane,
        # x = centre_x + major * sin(phi): keep the arc where x >= side - wall / 2.
        phi0 = float(np.degrees(np.arcsin(np.clip((side - wall / 2 - centre_x) / major, -1.0, 1.0))))
        parts.append(torus((centre_x, mid_y, 0), major, grip_t / 2, 24, 10, "handle",
                           matrix=rotation("x", 90.0), arc_degrees=180.0 - 2 * phi0, start_degrees=phi0))
    else:
        out = side + span * _u(rng, 0.45, 0.6)
        low, high = mid_y - span / 2, mid_y + span / 2
        inner = side - wall / 2
        parts.append(beam((inner, high, 0), (out, high, 0), grip_t, "handle"))
        parts.append(beam((out, high + grip_t / 2, 0), (out, low - grip_t / 2, 0), grip_t, "handle"))
        parts.append(beam((inner, low, 0), (out, low, 0), grip_t, "handle"))
    return parts


def mug_phrases(a: dict, mention: set) -> list[str]:
    words = [a[k] for k in ("thickness", "handle") if k in mention]
    return [f"a {' '.join(words)} handle"] if words else []


# ----------------------------------------------------------------------------------------------- vase

_VASE_PROFILES = {
    # (height fraction, radius fraction of the widest point)
    "round": ((0.0, 0.55), (0.15, 0.9), (0.38, 1.0), (0.62, 0.78), (0.8, 0.36), (0.92, 0.3), (1.0, 0.42)),
    "slender": ((0.0, 0.7), (0.3, 0.92), (0.6, 1.0), (0.85, 0.82), (1.0, 0.76)),
    "flared": ((0.0, 0.62), (0.12, 0.56), (0.45, 0.36), (0.75, 0.58), (1.0, 1.0)),
}


def _smooth_curve(points: np.ndarray, count: int) -> np.ndarray:
    """Catmull-Rom through [(t, r), ...] (t increasing), resampled at `count` uniform t in [t0, t1]."""
    t = np.linspace(points[0, 0], points[-1, 0], count)
    padded = np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
    out = np.empty(count)
    for n, x in enumerate(t):
        k = int(np.clip(np.searchsorted(points[:, 0], x, side="right") - 1, 0, len(points) - 2))
        p0, p1, p2, p3 = padded[k:k + 4, 1]
        s = (x - points[k, 0]) / (points[k + 1, 0] - points[k, 0])
        out[n] = 0.5 * (2 * p1 + (p2 - p0) * s + (2 * p0 - 5 * p1 + 4 * p2 - p3) * s**2 + (3 * p1 - p0 - 3 * p2 + p3) * s**3)
    return out


def build_vase(rng: np.random.Generator, a: dict) -> list[Part]:
    widest = _u(rng, 0.08, 0.12)
    height = 2 * widest * {"short": _u(rng, 0.8, 0.95), "medium": _u(rng, 1.25, 1.5), "tall": _u(rng, 1.9, 2.3)}[a["height"]]
    control = np.array(_VASE_PROFILES[a["body"]], dtype=np.float64)
    control[:, 1] *= rng.uniform(0.9, 1.1, size=len(control))
    control[:, 1] /= control[:, 1].max()
    rows = 18
    ys = np.linspace(0.0, 1.0, rows) * height
    radii = np.clip(_smooth_curve(control, rows), 0.2, None) * widest
    wall = 0.12 * radii[-1]
    depth_rows = 4  # the inside shows only near the mouth
    outer = [(0.0, 0.0)] + list(zip(radii, ys))
    inner = [(max(radii[k] - wall, 0.5 * radii[k]), ys[k]) for k in range(rows - 1, rows - 1 - depth_rows, -1)]
    profile = outer + inner + [(0.0, ys[rows - depth_rows])]
    sharp = (1, rows, rows + 1, len(profile) - 2)
    return [lathe(profile, 32, sharp=sharp, name="body")]


# ---------------------------------------------------------------------------------------------- shelf

def build_shelf(rng: np.random.Generator, a: dict) -> list[Part]:
    height, width = {
        "short": (_u(rng, 0.6, 0.8), _u(rng, 1.0, 1.3)),
        "medium": (_u(rng, 1.1, 1.4), _u(rng, 0.8, 1.1)),
        "tall": (_u(rng, 1.8, 2.1), _u(rng, 0.6, 0.9)),
    }[a["height"]]
    depth = _u(rng, 0.25, 0.35)
    t = _u(rng, 0.035, 0.05) if a["thickness"] == "thick" else _u(rng, 0.015, 0.022)
    plinth = _u(rng, 0.03, 0.08)
    parts = [box((sx * (width / 2 - t / 2), height / 2, 0), (t, height, depth), "side") for sx in (-1, 1)]
    inner = width - 2 * t
    levels = a["levels"]
    bottom, top = plinth + t / 2, height - t / 2
    for k in range(levels + 1):
        y = bottom + (top - bottom) * k / levels
        parts.append(box((0, y, 0.0), (inner + 0.004, t, depth - 0.004), "board"))
    parts.append(box((0, plinth / 2, depth / 2 - 0.03), (inner + 0.004, plinth, 0.02), "plinth"))
    if a["back"] == "solid":
        parts.append(box((0, (plinth + height) / 2, -depth / 2 + 0.006), (inner + 0.004, height - plinth, 0.012), "back"))
    return parts


def shelf_phrases(a: dict, mention: set) -> list[str]:
    out = []
    if "levels" in mention:
        out.append(f"{NUMBER_WORDS[a['levels']]} levels")
    if "back" in mention:
        out.append("a back panel" if a["back"] == "solid" else "an open back")
    if "thickness" in mention:
        out.append(f"{a['thickness']} boards")
    return out


# ------------------------------------------------------------------------------------------------ bed

def build_bed(rng: np.random.Generator, a: dict) -> list[Part]:
    length = _u(rng, 1.9, 2.15)
    width = _u(rng, 0.9, 1.1) if a["size"] == "single" else _u(rng, 1.45, 1.8)
    head_h = {"short": _u(rng, 0.6, 0.75), "medium": _u(rng, 0.9, 1.05), "tall": _u(rng, 1.25, 1.45)}[a["height"]]
    leg_h, frame_h, mattress_h = _u(rng, 0.08, 0.15), _u(rng, 0.15, 0.22), _u(rng, 0.16, 0.24)
    board_t = _u(rng, 0.04, 0.07)
    leg_t = _u(rng, 0.05, 0.08)
    parts = [box((0, leg_h + frame_h / 2, 0), (width, frame_h, length), "frame")]
    x, z = width / 2 - leg_t / 2, length / 2 - leg_t / 2 - board_t
    for fx, fz in ((-x, -z), (x, -z), (-x, z), (x, z)):
        parts.append(box((fx, leg_h / 2 + 0.005, fz), (leg_t, leg_h + 0.01, leg_t), "leg"))
    top = leg_h + frame_h
    parts.append(box((0, top + mattress_h / 2, 0), (width - 0.04, mattress_h, length - 0.04 - 2 * board_t), "mattress"))
    head_z = -length / 2 + board_t / 2
    if a["headboard"] == "solid":
        parts.append(box((0, head_h / 2, head_z), (width + 0.02, head_h, board_t), "headboard"))
    else:
        post = board_t * 1.3
        for sx in (-1, 1):
            parts.append(box((sx * (width / 2 + 0.01 - post / 2), head_h / 2, head_z), (post, head_h, post), "post"))
        rail_h = _u(rng, 0.06, 0.1)
        parts.append(box((0, head_h - rail_h / 2, head_z), (width + 0.02, rail_h, board_t), "rail"))
        slats = int(rng.integers(5, 9))
        span = width - 2 * post
        slat_w = span / (2 * slats + 1)
        for k in range(slats):
            sx = -span / 2 + slat_w * (2 * k + 1.5)
            parts.append(box((sx, (top + head_h - rail_h) / 2, head_z), (slat_w, head_h - rail_h - top + 0.02, board_t * 0.6), "slat"))
    if a["footboard"] == "yes":
        foot_h = top + mattress_h + _u(rng, 0.08, 0.2)
        parts.append(box((0, foot_h / 2, length / 2 - board_t / 2), (width + 0.02, foot_h, board_t), "footboard"))
    pillow_y = top + mattress_h + 0.05
    pillow_z = -length / 2 + board_t + 0.25
    count = a["pillows"]
    pillow_w = (width - 0.12) / count * 0.46
    for k in range(count):
        px = (k - (count - 1) / 2) * (width - 0.12) / count
        parts.append(ellipsoid((px, pillow_y, pillow_z), (pillow_w, 0.07, 0.18), 16, 8, "pillow"))
    return parts


def bed_phrases(a: dict, mention: set) -> list[str]:
    out = []
    if "headboard" in mention:
        out.append(f"a {a['headboard']} headboard")
    out += _yes_no(a, mention, "footboard", "footboard", "a ")
    if "pillows" in mention:
        out.append(f"{NUMBER_WORDS[a['pillows']]} pillow" + ("s" if a["pillows"] > 1 else ""))
    return out


# ----------------------------------------------------------------------------------------------- sofa

def build_sofa(rng: np.random.Generator, a: dict) -> list[Part]:
    seats = a["seats"]
    cushion_w = _u(rng, 0.55, 0.68)
    arm_w = _u(rng, 0.12, 0.24) if a["armrests"] == "yes" else 0.0
    width = seats * cushion_w + 2 * arm_w
    depth = _u(rng, 0.8, 0.95)
    leg_h = _u(rng, 0.06, 0.12)
    seat_h = _u(rng, 0.4, 0.46)
    cushion_h = _u(rng, 0.1, 0.15)
    back_h = {"short": _u(rng, 0.62, 0.7), "medium": _u(rng, 0.8, 0.9), "tall": _u(rng, 1.0, 1.15)}[a["height"]]
    back_t = _u(rng, 0.16, 0.24)
    base_top = seat_h - cushion_h
    parts = [box((0, (leg_h + base_top) / 2, 0), (width, base_top - leg_h, depth), "base")]
    leg_t = _u(rng, 0.04, 0.06)
    x, z = width / 2 - leg_t, depth / 2 - leg_t
    legs = [(-x, -z), (x, -z), (-x, z), (x, z)] + ([(0.0, -z), (0.0, z)] if a["legs"] == 6 else [])
    for fx, fz in legs:
        parts.append(box((fx, leg_h / 2 + 0.005, fz), (leg_t, leg_h + 0.01, leg_t), "leg"))
    seat_depth = depth - back_t
    for k in range(seats):
        cx = -width / 2 + arm_w + cushion_w * (k + 0.5)
        parts.append(box((cx, base_top + cushion_h / 2, back_t / 2), (cushion_w - 0.01, cushion_h, seat_depth - 0.01), "cushion"))
    back_z = -depth / 2 + back_t / 2
    if a["back"] == "solid":
        parts.append(box((0, (base_top + back_h) / 2, back_z), (width, back_h - base_top, back_t), "back"))
    else:
        low = seat_h + (back_h - seat_h) * _u(rng, 0.25, 0.45)
        parts.append(box((0, (base_top + low) / 2, back_z), (width, low - base_top, back_t), "back"))
        cushion_t = back_t * 0.9
        for k in range(seats):
            cx = -width / 2 + arm_w + cushion_w * (k + 0.5)
            parts.append(box((cx, (seat_h + back_h) / 2, back_z + back_t * 0.3),
                             (cushion_w - 0.02, back_h - seat_h, cushion_t), "back cushion"))
    if a["armrests"] == "yes":
        arm_top = seat_h + _u(rng, 0.15, 0.25)
        for sx in (-1, 1):
            parts.append(box((sx * (width / 2 - arm_w / 2), (leg_h + arm_top) / 2, 0.0), (arm_w, arm_top - leg_h, depth), "arm"))
    return parts


def sofa_phrases(a: dict, mention: set) -> list[str]:
    out = []
    if "seats" in mention:
        out.append(f"{NUMBER_WORDS[a['seats']]} seat cushions")
    out += _yes_no(a, mention, "armrests", "armrests")
    if "back" in mention:
        out.append(f"a {a['back']} back")
    if "legs" in mention:
        out.append(f"{NUMBER_WORDS[a['legs']]} legs")
    return out


register_family(Family(
    "chair",
    {"height": HEIGHTS, "legs": (3, 4), "armrests": ("yes", "no"), "back": ("solid", "slatted", "ladder"),
     "thickness": ("thin", "thick")},
    build_chair, phrases=chair_phrases))
register_family(Family(
    "table",
    {"height": HEIGHTS, "legs": (1, 3, 4), "top": ("round", "square", "rectangular"), "thickness": ("thin", "thick")},
    build_table, adjectives={"top": {"round": "round", "square": "square", "rectangular": "rectangular"}},
    phrases=table_phrases))
register_family(Family(
    "lamp",
    {"height": HEIGHTS, "shade": ("cone", "drum", "dome"), "base": ("round", "square"), "thickness": ("thin", "thick")},
    build_lamp, phrases=lamp_phrases))
register_family(Family(
    "mug",
    {"height": HEIGHTS, "handle": ("round", "square"), "thickness": ("thin", "thick")},
    build_mug, phrases=mug_phrases))
register_family(Family(
    "vase",
    {"height": HEIGHTS, "body": ("round", "slender", "flared")},
    build_vase, adjectives={"body": {"round": "round", "slender": "slender", "flared": "flared"}}))
register_family(Family(
    "shelf",
    {"height": HEIGHTS, "levels": (2, 3, 4, 5), "back": ("solid", "none"), "thickness": ("thin", "thick")},
    build_shelf, phrases=shelf_phrases))
register_family(Family(
    "bed",
    {"height": HEIGHTS, "size": ("single", "double"), "headboard": ("solid", "slatted"),
     "footboard": ("yes", "no"), "pillows": (1, 2)},
    build_bed, adjectives={"size": {"single": "single", "double": "double"}}, phrases=bed_phrases))
register_family(Family(
    "sofa",
    {"height": HEIGHTS, "seats": (2, 3), "armrests": ("yes", "no"), "back": ("solid", "cushioned"), "legs": (4, 6)},
    build_sofa, phrases=sofa_phrases))

CATEGORIES: tuple[str, ...] = tuple(FAMILIES)
"""The built-in categories, in registry order (labels for classifiers)."""
