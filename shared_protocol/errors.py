"""The one exception the protocol raises."""

from __future__ import annotations


class ProtocolError(Exception):
    """A message that cannot be encoded or decoded; the text names the field and the problem.

    `code` is what the server puts in its `error` reply: `bad_message` (malformed), `too_large` (over a
    limit), `unknown_type`, `protocol_mismatch`. `job` is the job id when the header still yielded one,
    so the reply can name the job. `hint` says the fix where there is one beyond correcting the field;
    `peer_protocol` is the version a mismatched message declared.
    """

    def __init__(self, message: str, code: str = "bad_message", job: str | None = None, hint: str = "",
                 peer_protocol: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.job = job
        self.hint = hint
        self.peer_protocol = peer_protocol


class ParamError(ValueError):
    """A job param (or blob) that the job does not take: unknown, missing, of the wrong type or out of range.

    The server answers it as `invalid_input`, the CLI as one line, the add-on in its panel, all with the same
    `message` and `hint` (the fix). `param` names the param when there is one.
    """

    def __init__(self, message: str, hint: str = "", param: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.param = param
