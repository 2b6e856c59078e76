"""One world shape from a seed: its labels, mesh, texture and caption."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.geometry.mesh import Mesh
from backend.world.appearance import Appearance, pattern_texture, sample_appearance
from backend.world.captions import caption_words, make_caption
from backend.world.families import FAMILIES
from backend.world.parts import assemble


@dataclass
class WorldShape:
    """A generated shape and the truth about it."""

    mesh: Mesh
    """Textured mesh in metres (glTF frame: Y up, front +Z), standing on y = 0: vertices [N, 3] float32,
    faces [F, 3] int32, uv [N, 2] float32 in pattern tiles (the texture repeats), texture [T, T, 3]
    uint8 (one pattern period). metadata: "normals" [N, 3] float32 smooth shading normals, "parts"
    [(name, first face, end face)], "category"."""
    category: str
    """Family name, e.g. "chair"."""
    attributes: dict
    """The family's attribute labels, e.g. {"height": "tall", "legs": 4, "armrests": "yes", ...}."""
    colour: str
    """Base colour name."""
    pattern: str
    """"plain", "stripes", "checks" or "dots"."""
    caption: str
    """A caption that mentions the category, colour, pattern (unless plain) and every attribute."""
    seed: int
    """The seed that reproduces this shape with `make_shape(seed, category, **overrides)`."""
    appearance: Appearance
    """Colour details (jittered base, accent tone, pattern scale)."""

    @property
    def labels(self) -> dict:
        """{"category", "colour", "pattern", **attributes}: every label in one flat dict."""
        return {"category": self.category, "colour": self.colour, "pattern": self.pattern, **self.attributes}

    def caption_words(self) -> set[str]:
        """The phrases `caption` must contain (see `captions.caption_words`)."""
        return caption_words(self.category, self.colour, self.pattern, self.attributes)


def _streams(seed: int) -> list[np.random.Generator]:
    """Independent generators for labels, geometry, appearance and caption: fixing one label by an
    override changes nothing that does not depend on it."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(4)]


def sample_labels(rng: np.random.Generator, category: str | None = None, **overrides) -> tuple[str, dict]:
    """Draws a category (unless given) and its attributes; overrides fix attribute values (validated)."""
    names = list(FAMILIES)
    drawn = names[int(rng.integers(len(names)))]
    if category is not None and category not in FAMILIES:
        raise ValueError(f"unknown category {category!r}; choose one of {', '.join(FAMILIES)}")
    family = FAMILIES[category or drawn]
    unknown = set(overrides) - set(family.attributes)
    if unknown:
        raise ValueError(f"a {family.name} has no attribute {sorted(unknown)}; its attributes are "
                         f"{', '.join(family.attributes)} (plus colour and pattern)")
    attributes = {}
    for name, values in family.attributes.items():
        value = values[int(rng.integers(len(values)))]
        if name in overrides:
            value = overrides[name]
            if value not in values:
                raise ValueError(f"{family.name} {name} must be one of {list(values)}, got {value!r}")
        attributes[name] = value
    return family.name, attributes


def make_shape(seed: int, category: str | None = None, *, colour: str | None = None, pattern: str | None = None,
               **overrides) -> WorldShape:
    """The shape for `seed`: deterministic (same arguments -> byte-identical arrays).

    category: fix the family (default: drawn from the seed). colour, pattern and the family's
    attributes (e.g. legs=4, armrests="yes") may be fixed too; unknown names or values raise
    ValueError listing the valid ones.
    """
    label_rng, geometry_rng, appearance_rng, caption_rng = _streams(seed)
    category, attributes = sample_labels(label_rng, category, **overrides)
    appearance = sample_appearance(appearance_rng, colour, pattern)
    parts = FAMILIES[category].build(geometry_rng, dict(attributes))
    points = np.concatenate([p.vertices for p in parts])
    # Leaning legs dip a corner below the floor: stand the shape on y = 0 exactly.
    lift = np.array([0.0, -points[:, 1].min(), 0.0])
    parts = [p.transformed(None, lift) for p in parts]
    points = points + lift
    low, high = points.min(axis=0), points.max(axis=0)
    radius = float(np.linalg.norm(points - 0.5 * (low + high), axis=1).max())
    joined = assemble(parts, radius / appearance.periods, appearance.offset)
    mesh = Mesh(
        vertices=joined.vertices,
        faces=joined.faces,
        uv=joined.uv,
        texture=pattern_texture(appearance),
        name=f"{category}_{seed}",
        metadata={"normals": joined.normals, "parts": joined.part_faces, "category": category},
    )
    caption = make_caption(category, appearance.colour, appearance.pattern, attributes, caption_rng)
    return WorldShape(mesh, category, attributes, appearance.colour, appearance.pattern, caption, int(seed), appearance)
