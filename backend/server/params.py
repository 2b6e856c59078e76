"""Checking a job's JSON params; every failure is an `InvalidInputError` that names the param and the range."""

from __future__ import annotations

import math
from collections.abc import Iterable

from backend.errors import InvalidInputError
from shared_protocol.errors import ParamError
from shared_protocol.params import JobRequest

_MISSING = object()


def check_known(params: dict, allowed: Iterable[str], kind: str) -> None:
    """Rejects params the job kind does not take (a typo would otherwise be silently ignored)."""
    allowed = tuple(allowed)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise InvalidInputError(f"the {kind} job has no param {unknown[0]!r}",
                                hint=f"its params are: {', '.join(allowed)}")


def int_param(params: dict, name: str, lo: int, hi: int, default: int | None = None) -> int:
    """An integer in [lo, hi]; `default` when absent (None: required)."""
    value = params.get(name, _MISSING)
    if value is _MISSING:
        if default is None:
            raise InvalidInputError(f"param {name!r} is missing", hint=f"send an integer in [{lo}, {hi}]")
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidInputError(f"param {name!r} must be an integer in [{lo}, {hi}], got {value!r:.40}",
                                hint=f"send {name} between {lo} and {hi}")
    return value


def float_param(params: dict, name: str, lo: float, hi: float, default: float | None = None) -> float:
    """A finite number in [lo, hi]; `default` when absent (None: required)."""
    value = params.get(name, _MISSING)
    if value is _MISSING:
        if default is None:
            raise InvalidInputError(f"param {name!r} is missing", hint=f"send a number in [{lo}, {hi}]")
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and lo <= value <= hi):
        raise InvalidInputError(f"param {name!r} must be a number in [{lo}, {hi}], got {value!r:.40}",
                                hint=f"send {name} between {lo} and {hi}")
    return float(value)


def str_param(params: dict, name: str, default: str | None, choices: tuple[str, ...] | None = None) -> str:
    """A string (one of `choices` when given); `default` when absent (None: required)."""
    value = params.get(name, default)
    if value is None:
        raise InvalidInputError(f"param {name!r} is missing", hint=f"send {name} as a string")
    if not isinstance(value, str) or (choices is not None and value not in choices):
        expected = f"one of {', '.join(choices)}" if choices else "a string"
        raise InvalidInputError(f"param {name!r} must be {expected}, got {value!r:.60}",
                                hint=f"send {name} as {expected}")
    return value


def bool_param(params: dict, name: str, default: bool) -> bool:
    """A JSON boolean; `default` when absent."""
    value = params.get(name, default)
    if not isinstance(value, bool):
        raise InvalidInputError(f"param {name!r} must be true or false, got {value!r:.40}",
                                hint=f"send {name} as a JSON boolean")
    return value


def read_request(cls: type[JobRequest], ctx) -> JobRequest:
    """The job's request (`shared_protocol.requests`) from its params and blob names; a bad one is an
    InvalidInputError with the request's own message and fix."""
    try:
        return cls.from_params(ctx.params, list(ctx.blobs))
    except ParamError as exc:
        raise InvalidInputError(exc.message, hint=exc.hint) from exc
