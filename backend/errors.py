"""Errors that carry a fix. They cross the process boundary as `error{code, message, hint}`."""

from __future__ import annotations


class AtelierError(Exception):
    """A user-facing failure: `message` says what is wrong, `hint` says how to fix it."""

    code: str = "atelier_error"

    def __init__(self, message: str, hint: str = "", code: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InvalidInputError(AtelierError):
    """Bad input from the user (mesh, image, prompt, parameter)."""

    code = "invalid_input"


class WeightsMissingError(AtelierError):
    """Model weights are not on this machine; the hint names the command that fetches them."""

    code = "weights_missing"


class DependencyMissingError(AtelierError):
    """An optional package (nvdiffrast, deodr, ...) is needed for the chosen feature."""

    code = "dependency_missing"


class JobCancelled(Exception):
    """Raised inside a long loop when its cancel flag is set; not an error for the user."""
