"""Typed job params: a spec per field and the `JobRequest` base every job's request dataclass builds on.

A job's request (`shared_protocol.requests`) is one dataclass: its fields are the job's params, each with a
default and a spec (type, bounds, choices) in its metadata. The add-on builds one from the panel's fields and
sends `to_params()`; the server reads `from_params(params, blobs)`; the CLI builds its flags from the same
fields. So a default or a bound is written once, and both sides refuse the same values with the same words.

    request = StylizeRequest(prompt="a red chair", quality="draft")   # ParamError for a bad value
    submit_params = request.to_params()                              # {"prompt": ..., "quality": "draft", ...}
    StylizeRequest.from_params(submit_params)                        # the server's side: equal request

Standard library only (the add-on imports this package).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, ClassVar

from shared_protocol.errors import ParamError
from shared_protocol.limits import MAX_STRING

_MISSING = object()


@dataclass(frozen=True, kw_only=True)
class Spec:
    """How one param is checked. `unset` is the Python value meaning "not sent" (the backend's default
    applies): `to_params` leaves it out, and it is accepted from code but not sent on the wire."""

    help: str = ""
    """What the param does (the CLI's --help text)."""
    unset: Any = _MISSING
    """The value that means "not sent"; _MISSING: every value is sent."""

    def check(self, name: str, value: Any) -> Any:
        """The checked (normalised) value; ParamError naming `name`, the expected and the given value."""
        raise NotImplementedError

    def expected(self) -> str:
        """What a valid value is, in words ("an integer in [1, 16]")."""
        raise NotImplementedError

    def fail(self, name: str, value: Any, hint: str = "") -> ParamError:
        return ParamError(f"param {name!r} must be {self.expected()}, got {value!r:.60}",
                          hint=hint or f"send {name} as {self.expected()}", param=name)


@dataclass(frozen=True)
class Int(Spec):
    """An integer in [lo, hi] (a JSON bool is not an integer)."""

    lo: int = 0
    hi: int = 0

    def check(self, name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            raise self.fail(name, value, hint=f"send {name} between {self.lo} and {self.hi}")
        return value

    def expected(self) -> str:
        return f"an integer in [{self.lo}, {self.hi}]"


@dataclass(frozen=True)
class Float(Spec):
    """A finite number in [lo, hi]; integers are taken as numbers."""

    lo: float = 0.0
    hi: float = 0.0

    def check(self, name: str, value: Any) -> float:
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not (math.isfinite(value) and self.lo <= value <= self.hi)):
            raise self.fail(name, value, hint=f"send {name} between {self.lo} and {self.hi}")
        return float(value)

    def expected(self) -> str:
        return f"a number in [{self.lo}, {self.hi}]"


@dataclass(frozen=True)
class Choice(Spec):
    """One of a few strings."""

    choices: tuple[str, ...] = ()

    def check(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise self.fail(name, value)
        return value

    def expected(self) -> str:
        return f"one of {', '.join(self.choices)}"


@dataclass(frozen=True)
class Text(Spec):
    """A string of at most `max_chars` characters, stripped of surrounding blanks; `required`: not empty."""

    max_chars: int = MAX_STRING
    required: bool = False
    what: str = ""
    """How messages call it ("the prompt"); "" uses "param 'name'"."""
    empty_hint: str = ""
    """The fix an empty required value gets."""
    path: str = ""
    """"file": a path on the backend's machine; "clip": a CLIP spec that may name one; "": not a path. A server
    confines both to the folders it was started with (`backend.server.paths`)."""

    def check(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.fail(name, value)
        value = value.strip()
        what = self.what or f"param {name!r}"
        if self.required and not value:
            raise ParamError(f"{what} is empty", hint=self.empty_hint or f"send {name} as a non-empty string",
                             param=name)
        if len(value) > self.max_chars:
            raise ParamError(f"{what} is {len(value)} characters long, more than {self.max_chars}",
                             hint="shorten it", param=name)
        return value

    def expected(self) -> str:
        return f"a string of at most {self.max_chars} characters"


@dataclass(frozen=True)
class Bool(Spec):
    """A JSON boolean."""

    def check(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(name, value, hint=f"send {name} as a JSON boolean")
        return value

    def expected(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class Color(Spec):
    """[r, g, b] with components in [0, 1]."""

    def check(self, name: str, value: Any) -> list[float]:
        if (not isinstance(value, (list, tuple)) or len(value) != 3
                or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and 0.0 <= c <= 1.0
                           for c in value)):
            raise self.fail(name, value, hint="send e.g. [1.0, 1.0, 1.0] for white")
        return [float(c) for c in value]

    def expected(self) -> str:
        return "[r, g, b] with components in [0, 1]"


@dataclass(frozen=True)
class Palette(Spec):
    """"auto", "none" or up to `max_colors` hex colours "#rrggbb,#rgb,..." (normalised to lower-case #rrggbb)."""

    max_colors: int = 16

    _HEX: ClassVar[re.Pattern] = re.compile(r"#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")

    def check(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.fail(name, value)
        stripped = value.strip()
        if stripped.lower() in ("", "auto"):
            return "auto"
        if stripped.lower() == "none":
            return "none"
        hint = f"write auto, none, or 1 to {self.max_colors} colours such as #aa3311,#f0e0c0 (each #rrggbb or #rgb)"
        tokens = [token.strip() for token in stripped.split(",")]
        if len(tokens) > self.max_colors:
            raise ParamError(f"the palette has {len(tokens)} colours, over the {self.max_colors} limit", hint, name)
        colors = []
        for position, token in enumerate(tokens, start=1):
            match = self._HEX.fullmatch(token)
            if match is None:
                what = "is empty" if not token else f"{token!r} is not a hex colour"
                raise ParamError(f"palette colour {position} of {len(tokens)} {what}", hint, name)
            digits = match.group(1).lower()
            colors.append("#" + (digits if len(digits) == 6 else "".join(d * 2 for d in digits)))
        return ",".join(colors)

    def expected(self) -> str:
        return "auto, none or hex colours such as #aa3311,#f0e0c0"


@dataclass(frozen=True)
class JsonList(Spec):
    """A JSON list whose items the job's own code checks (points, boxes, strokes: numbers with meaning)."""

    shape: str = "a list"
    """What the list holds, in words ("[[x, y, label], ...]")."""
    max_items: int = 4096

    def check(self, name: str, value: Any) -> list:
        if not isinstance(value, (list, tuple)) or len(value) > self.max_items:
            raise self.fail(name, value)
        return list(value)

    def expected(self) -> str:
        return f"{self.shape} of at most {self.max_items} items"


def unset_unless(required: bool, unset: Any) -> dict:
    """Spec keyword arguments: no `unset` for a required param (it must be given), else `unset`."""
    return {} if required else {"unset": unset}


def param(spec: Spec, default: Any = _MISSING) -> Any:
    """A request field: `default` (none: required) and its spec. A list default is copied per instance."""
    metadata = {"spec": spec}
    if default is _MISSING:
        return dataclasses.field(metadata=metadata)
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass
class JobRequest:
    """A job's params as one dataclass. Subclasses set `KIND` and declare fields with `param(spec, default)`;
    `requires(blobs)` adds the rules that span fields or blobs. Constructing one checks every field."""

    KIND: ClassVar[str] = ""
    BLOBS: ClassVar[tuple[str, ...]] = ()
    """The blob names the job takes (a name ending in "_" is a numbered family: style_0, style_1, ...)."""

    def __post_init__(self) -> None:
        for name, spec in self.specs().items():
            value = getattr(self, name)
            if spec.unset is not _MISSING and value == spec.unset:
                continue
            setattr(self, name, spec.check(name, value))

    @classmethod
    def specs(cls) -> dict[str, Spec]:
        """Param name -> spec, in declaration order."""
        return {f.name: f.metadata["spec"] for f in dataclasses.fields(cls) if "spec" in f.metadata}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Param name -> default value (required params are left out)."""
        out = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        return out

    @classmethod
    def from_params(cls, params: dict, blobs: Collection[str] = ()) -> JobRequest:
        """The request a `submit` carries; ParamError for an unknown, missing or bad param or blob.

        Wire values are checked as sent: a spec's `unset` (0 steps, "the preset's") is code's way of saying
        "not sent", so it passes only where it is a valid value too ("" for an optional text).
        """
        if not isinstance(params, dict):
            raise ParamError(f"the {cls.KIND} job's params must be an object, got {type(params).__name__}")
        specs = cls.specs()
        unknown = sorted(set(params) - set(specs))
        if unknown:
            raise ParamError(f"the {cls.KIND} job has no param {unknown[0]!r}",
                             hint=f"its params are: {', '.join(specs)}", param=unknown[0])
        defaults = cls.defaults()
        values = {}
        for name, spec in specs.items():
            value = params.get(name, _MISSING)
            if value is _MISSING:
                if name not in defaults:
                    raise ParamError(f"param {name!r} is missing", hint=f"send {name} as {spec.expected()}",
                                     param=name)
                continue
            values[name] = spec.check(name, value)
        request = cls(**values)
        request.check_blobs(blobs)
        request.requires(blobs)
        return request

    def check_blobs(self, blobs: Collection[str]) -> None:
        """ParamError for a blob this job does not take."""
        for blob in sorted(blobs):
            family = blob.rstrip("0123456789")
            if blob not in self.BLOBS and not (family.endswith("_") and family in self.BLOBS):
                taken = ", ".join(repr(b + "N" if b.endswith("_") else b) for b in self.BLOBS) or "none"
                raise ParamError(f"the {self.KIND} job takes no blob {blob!r}", hint=f"its blobs are: {taken}")

    def requires(self, blobs: Collection[str]) -> None:
        """Rules across params and blobs (a subclass's); ParamError when one is broken."""

    def to_params(self) -> dict:
        """The `submit` params: every field but those left at their spec's `unset`."""
        out = {}
        for name, spec in self.specs().items():
            value = getattr(self, name)
            if spec.unset is not _MISSING and value == spec.unset:
                continue
            out[name] = value
        return out
