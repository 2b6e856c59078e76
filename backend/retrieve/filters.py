"""Which shapes a search may return: category, Blender asset catalog (a subtree), tag, file format.

A `ShapeFilter` is checked against the library before searching (an unknown catalog, tag or format is an
error listing what the library has, not an empty result) and turns into one SQL condition on `shapes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.errors import InvalidInputError
from shared_protocol.limits import MAX_STRING


@dataclass(frozen=True)
class ShapeFilter:
    """Conditions a shape must meet (all of those given)."""

    category: str | None = None
    """Exactly this category (categories.json or folder name)."""
    catalog: str | None = None
    """This Blender asset catalog or any catalog below it ("Furniture" holds "Furniture/Chairs")."""
    tag: str | None = None
    """An asset tag, compared without regard to case."""
    format: str | None = None
    """The library file's format: its extension without the dot ("blend", "fbx", "obj", ...)."""

    @property
    def empty(self) -> bool:
        return not any((self.category, self.catalog, self.tag, self.format))

    def where(self) -> tuple[str, list]:
        """(SQL condition on the `shapes` table, its arguments); "1" when nothing is filtered."""
        parts, args = [], []
        if self.category is not None:
            parts.append("category = ?")
            args.append(self.category)
        if self.catalog is not None:
            escaped = self.catalog.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            parts.append("(catalog = ? OR catalog LIKE ? ESCAPE '\\')")
            args += [self.catalog, escaped + "/%"]
        if self.tag is not None:
            parts.append("EXISTS (SELECT 1 FROM json_each(shapes.tags) WHERE lower(json_each.value) = lower(?))")
            args.append(self.tag)
        if self.format is not None:
            parts.append("format = ?")
            args.append(self.format)
        return (" AND ".join(parts) or "1"), args


def _text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_STRING:
        raise InvalidInputError(f"{what} must be a non-empty name, got {value!r:.60}")
    return value.strip()


def check_filter(db, category: Any = None, catalog: Any = None, tag: Any = None, format: Any = None) -> ShapeFilter:
    """A ShapeFilter from user input; InvalidInputError naming what the library has for an unknown value."""
    category, tag = _text(category, "category"), _text(tag, "tag")
    catalog = _text(catalog, "catalog")
    catalog = catalog.strip("/") if catalog else None
    format = _text(format, "format")
    format = format.lower().lstrip(".") if format else None
    checks = (("category", category, db.categories(), lambda known: category in known),
              ("catalog", catalog, db.catalogs(),
               lambda known: any(c == catalog or c.startswith(catalog + "/") for c in known)),
              ("tag", tag, db.tags(), lambda known: tag.lower() in {t.lower() for t in known}),
              ("format", format, db.formats(), lambda known: format in known))
    for what, value, known, ok in checks:
        if value is not None and not ok(known):
            listed = ", ".join(known) if known else f"none (no shape has a {what})"
            plural = "categories" if what == "category" else what + "s"
            raise InvalidInputError(f"the library has no shape of {what} {value!r}",
                                    hint=f"its {plural} are: {listed}"[:1000])
    return ShapeFilter(category=category, catalog=catalog, tag=tag, format=format)
