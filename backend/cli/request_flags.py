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


def add_request_flags(parser: argparse.ArgumentParser, cls: type[JobRequest], names: Iterable[str],
                      required: Iterable[str] = ()) -> None:
    """Adds a flag for each named param of `cls`: its type, choices, default and help. `required` names flags
    the command cannot do without (a required param with no default is required anyway)."""
    specs, defaults, required = cls.specs(), cls.defaults(), set(required)
    for name in names:
        spec = specs[name]
        default = defaults.get(name)
        kwargs: dict = {"dest": name, "help": _help(spec, default)}
        if isinstance(spec, Bool):
            kwargs.update(action=argparse.BooleanOptionalAction if default else "store_true", default=bool(default))
        else:
            kwargs.update(default=default, type={Int: int, Float: float}.get(type(spec), str))
            if isinstance(spec, Choice):
                kwargs["choices"] = [c for c in spec.choices if c != spec.unset]
            if name in required or name not in defaults:
                kwargs["required"] = True
        parser.add_argument(flag(name), **kwargs)


def request_from_args(cls: type[JobRequest], args: argparse.Namespace, names: Iterable[str],
                      **values: object) -> JobRequest:
    """The request from parsed flags (`names`) plus `values`; a bad value is an InvalidInputError that names the
    flag (exit 2, one line), before anything loads."""
    fields = {name: getattr(args, name) for name in names}
    fields.update(values)
    try:
        return cls(**fields)
    except ParamError as exc:
        message = exc.message
        if exc.param is not None and exc.param in fields and exc.param not in values:
            message = message.replace(f"param {exc.param!r}", flag(exc.param))
        raise InvalidInputError(message, exc.hint) from exc
