"""The add-on's one exception: a problem the artist can fix, with the fix in `hint`. No bpy."""

from __future__ import annotations


class AddonError(Exception):
    """A readable failure: `message` says what went wrong, `hint` how to fix it, `code` names it for tests.

    Operators catch it and show `message` (plus `hint`) in the panel and the status bar; it never becomes
    a traceback dialog.
    """

    def __init__(self, message: str, hint: str = "", code: str = "invalid_input"):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message
