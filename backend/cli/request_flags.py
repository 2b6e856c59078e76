"""A job request's params as `atelier` flags, and back: the CLI takes its defaults, bounds and help from the same
request dataclass the add-on builds and the server reads (`shared_protocol.requests`)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from backend.errors import InvalidInputError
from shared_protocol.errors import ParamError
from shared_protocol.params import Bool, Choice, Float, Int, JobRequest, Spec


def flag(name: str) -> str:
    """The flag of a param: texture_size -> --texture-size."""
    return "--" + name.replace("_", "-")


def _help(spec: Spec, default: object) -> str:
    bounds = f"{spec.lo}..{spec.hi}; " if isinstance(spec, (Int, Float)) else ""
    shown = "" if default in (None, "") or default == spec.unset else f"default {default}"
    if not bounds and not shown:
        return spec.help
    return f"{spec.help} ({bounds}{shown})".replace("; )", ")")


def add_request_flags(parser: argparse.ArgumentParser, cls: type[JobRequest], names: Iterable[str]) -> None:
    """Adds a flag for each named param of `cls`, with its type, choices and help (its default and bounds shown).
    A flag left out is not sent: the request's default applies (a required param's flag is required)."""
    specs, defaults = cls.specs(), cls.defaults()
    for name in names:
        spec = specs[name]
        kwargs: dict = {"dest": name, "help": _help(spec, defaults.get(name)), "default": None}
        if isinstance(spec, Bool):
            kwargs.update(action=argparse.BooleanOptionalAction if defaults.get(name) else "store_true")
            kwargs.pop("default")
        else:
            kwargs["type"] = {Int: int, Float: float}.get(type(spec), str)
            if isinstance(spec, Choice):
                kwargs["choices"] = [c for c in spec.choices if c != spec.unset]
            if name not in defaults:
                kwargs["required"] = True
        parser.add_argument(flag(name), **kwargs)


def request_from_args(cls: type[JobRequest], args: argparse.Namespace, names: Iterable[str],
                      blobs: Iterable[str] = (), **values: object) -> JobRequest:
    """The request from the flags given (`names`) plus `values` (None: not given), read as the server reads a
    job's params; a bad value is an InvalidInputError naming the flag (exit 2, one line) before anything loads.
    `blobs` names what the command's files stand for (e.g. style_0, style_1 for restyle's --style)."""
    params = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    params.update({name: value for name, value in values.items() if value is not None})
    try:
        return cls.from_params(params, list(blobs))
    except ParamError as exc:
        message = exc.message
        if exc.param is not None and exc.param not in values:
            message = message.replace(f"param {exc.param!r}", flag(exc.param))
        raise InvalidInputError(message, exc.hint) from exc
