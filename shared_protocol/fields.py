"""Reading and writing header fields, with errors that name the field and the problem.

`HeaderReader` pulls typed, bounded values out of a decoded JSON header and resolves blob refs;
`finish()` rejects fields the message type does not define and blobs nothing referenced.
`HeaderWriter` collects blobs while a message builds its header.
"""

from __future__ import annotations

import math
import re

from shared_protocol.arrays import Array, check_array_spec
from shared_protocol.errors import ProtocolError
from shared_protocol.limits import (
    MAX_JOB_ID_CHARS, MAX_JSON_DEPTH, MAX_LIST_ITEMS, MAX_METRICS, MAX_NAME_CHARS, MAX_STRING, PNG_SIGNATURE,
)

NAME_CHARS = "A-Z a-z 0-9 _ . : -"
_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,%d}\Z" % MAX_NAME_CHARS)
_JOB_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,%d}\Z" % (MAX_JOB_ID_CHARS - 1))
_CODE_RE = re.compile(r"[a-z][a-z0-9_]{0,%d}\Z" % (MAX_NAME_CHARS - 1))

_MISSING = object()


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_job_id(value: object) -> bool:
    """True for a valid client-chosen job id (1..64 chars of A-Z a-z 0-9 _ . : -, not starting with a symbol)."""
    return isinstance(value, str) and _JOB_RE.match(value) is not None


def is_name(value: object) -> bool:
    """True for a valid short name (job kind, stage, metric, blob or array name)."""
    return isinstance(value, str) and _NAME_RE.match(value) is not None


class HeaderWriter:
    """Collects blob frames while a message writes its header; refs are 0-based blob indices (frame i+1)."""

    def __init__(self) -> None:
        self.blobs: list[bytes] = []

    def blob(self, data: object, field: str) -> dict:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ProtocolError(f"'{field}' must be bytes, got {type(data).__name__}")
        self.blobs.append(bytes(data))
        return {"blob": len(self.blobs) - 1}

    def array(self, arr: object, field: str) -> dict:
        if not isinstance(arr, Array):
            raise ProtocolError(f"'{field}' must be a shared_protocol.Array, got {type(arr).__name__}")
        ref = self.blob(arr.data, field)
        ref.update(dtype=arr.dtype, shape=list(arr.shape))
        return ref

    def named_blobs(self, blobs: object, field: str) -> dict:
        if not isinstance(blobs, dict):
            raise ProtocolError(f"'{field}' must be a dict of name -> bytes, got {type(blobs).__name__}")
        return {name: self.blob(data, f"{field}.{name}") for name, data in blobs.items()}

    def named_arrays(self, arrays: object, field: str) -> dict:
        if not isinstance(arrays, dict):
            raise ProtocolError(f"'{field}' must be a dict of name -> Array, got {type(arrays).__name__}")
        return {name: self.array(arr, f"{field}.{name}") for name, arr in arrays.items()}


class HeaderReader:
    """Typed access to one header dict and its blobs; every getter raises `ProtocolError` on a bad value."""

    def __init__(self, header: dict, blobs: list[bytes], msg_type: str):
        self.header = header
        self.blobs = blobs
        self.msg_type = msg_type
        self._used_keys = {"protocol", "type"}
        self._blob_owner: dict[int, str] = {}

    # -- plain values -------------------------------------------------------------------------------

    def _get(self, name: str, optional: bool) -> object:
        self._used_keys.add(name)
        value = self.header.get(name, _MISSING)
        if value is _MISSING or (value is None and optional):
            if optional:
                return _MISSING
            raise ProtocolError(f"header field '{name}' is missing from the '{self.msg_type}' message")
        return value

    def string(self, name: str, *, max_chars: int = MAX_STRING, optional: bool = False,
               default: str | None = "") -> str | None:
        value = self._get(name, optional)
        if value is _MISSING:
            return default
        return check_string(value, name, max_chars)

    def job(self, name: str = "job", *, optional: bool = False) -> str | None:
        value = self._get(name, optional)
        if value is _MISSING:
            return None
        return check_job(value, name)

    def raw(self, name: str) -> object | None:
        """The field's value unchecked (None when absent), for sub-structures with their own parser."""
        self._used_keys.add(name)
        return self.header.get(name)

    def name(self, name: str, *, optional: bool = False, allow_empty: bool = False) -> str:
        """A short name (A-Z a-z 0-9 _ . : -); "" when optional and absent, or when `allow_empty`."""
        value = self._get(name, optional)
        if value is _MISSING:
            return ""
        if allow_empty and value == "":
            return value
        return check_name(value, name)

    def code(self, name: str) -> str:
        value = self._get(name, False)
        if not isinstance(value, str) or not _CODE_RE.match(value):
            raise ProtocolError(f"header field '{name}' must be a lower-case code of at most {MAX_NAME_CHARS} "
                                f"characters (a-z 0-9 _), got {_describe(value)}")
        return value

    def integer(self, name: str, lo: int, hi: int, *, optional: bool = False, default: int = 0) -> int:
        value = self._get(name, optional)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ProtocolError(f"header field '{name}' must be an integer in [{lo}, {hi}], got {_describe(value)}")
        return value

    def number(self, name: str, *, optional: bool = True) -> float | None:
        value = self._get(name, optional)
        if value is _MISSING:
            return None
        return check_number(value, name)

    def boolean(self, name: str, *, default: bool = False) -> bool:
        value = self._get(name, True)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise ProtocolError(f"header field '{name}' must be true or false, got {_describe(value)}")
        return value

    def names(self, name: str, *, job_ids: bool = False) -> list[str]:
        value = self._get(name, True)
        if value is _MISSING:
            return []
        if not isinstance(value, list) or len(value) > MAX_LIST_ITEMS:
            raise ProtocolError(f"header field '{name}' must be a list of at most {MAX_LIST_ITEMS} names")
        for item in value:
            check_job(item, f"{name}[]") if job_ids else check_name(item, f"{name}[]")
        return list(value)

    def strings(self, name: str, *, max_chars: int = 256) -> list[str]:
        value = self._get(name, True)
        if value is _MISSING:
            return []
        if not isinstance(value, list) or len(value) > MAX_LIST_ITEMS:
            raise ProtocolError(f"header field '{name}' must be a list of at most {MAX_LIST_ITEMS} strings")
        return [check_string(item, f"{name}[]", max_chars) for item in value]

    def json_dict(self, name: str) -> dict:
        value = self._get(name, True)
        if value is _MISSING:
            return {}
        check_json(value, name)
        if not isinstance(value, dict):
            raise ProtocolError(f"header field '{name}' must be a JSON object, got {type(value).__name__}")
        return value

    def metrics(self, name: str) -> dict[str, float | None]:
        value = self._get(name, True)
        if value is _MISSING:
            return {}
        return check_metrics(value, name)

    # -- blobs --------------------------------------------------------------------------------------

    def _claim(self, ref: object, field: str, extra_keys: tuple[str, ...] = ()) -> tuple[int, bytes]:
        if not isinstance(ref, dict) or "blob" not in ref:
            raise ProtocolError(f"header field '{field}' must be a blob ref {{\"blob\": index}}, got {_describe(ref)}")
        unknown = set(ref) - {"blob", *extra_keys}
        if unknown:
            raise ProtocolError(f"blob ref '{field}' has unknown keys {sorted(map(str, unknown))}")
        index = ref["blob"]
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.blobs):
            raise ProtocolError(f"header field '{field}' refers to blob {_describe(index)}, but the message carries "
                                f"{len(self.blobs)} blob(s) (indices 0..{len(self.blobs) - 1}, frames 1..{len(self.blobs)})")
        if index in self._blob_owner:
            raise ProtocolError(f"blob {index} is referenced twice, by '{self._blob_owner[index]}' and '{field}'")
        self._blob_owner[index] = field
        return index, self.blobs[index]

    def blob_ref(self, ref: object, field: str, *, png: bool = False) -> bytes:
        index, data = self._claim(ref, field)
        if png and not data.startswith(PNG_SIGNATURE):
            raise ProtocolError(f"blob {index} for '{field}' is not a PNG (it does not start with the PNG signature)")
        return data

    def array_ref(self, ref: object, field: str) -> Array:
        index, data = self._claim(ref, field, ("dtype", "shape"))
        shape = check_array_spec(ref.get("dtype"), ref.get("shape"), len(data), field)
        return Array(ref["dtype"], shape, data)

    def blob(self, name: str, *, png: bool = False) -> bytes | None:
        ref = self._get(name, True)
        return None if ref is _MISSING else self.blob_ref(ref, name, png=png)

    def array(self, name: str, *, optional: bool = False) -> Array | None:
        ref = self._get(name, optional)
        return None if ref is _MISSING else self.array_ref(ref, name)

    def named_blobs(self, name: str) -> dict[str, bytes]:
        value = self._get(name, True)
        if value is _MISSING:
            return {}
        if not isinstance(value, dict):
            raise ProtocolError(f"header field '{name}' must be an object of name -> blob ref")
        return {check_name(key, f"{name} key"): self.blob_ref(ref, f"{name}.{key}") for key, ref in value.items()}

    def named_arrays(self, name: str) -> dict[str, Array]:
        value = self._get(name, True)
        if value is _MISSING:
            return {}
        if not isinstance(value, dict):
            raise ProtocolError(f"header field '{name}' must be an object of name -> array ref")
        return {check_name(key, f"{name} key"): self.array_ref(ref, f"{name}.{key}") for key, ref in value.items()}

    def finish(self) -> None:
        """Rejects header fields this message type does not define and blobs nothing referenced."""
        unknown = sorted(set(self.header) - self._used_keys)
        if unknown:
            raise ProtocolError(f"header field '{unknown[0]:.64}' is not part of a '{self.msg_type}' message")
        unused = sorted(set(range(len(self.blobs))) - set(self._blob_owner))
        if unused:
            raise ProtocolError(f"blob {unused[0]} (frame {unused[0] + 1}) is not referenced by the header")


# -- checks shared with the dataclasses ---------------------------------------------------------------

def check_string(value: object, field: str, max_chars: int = MAX_STRING) -> str:
    if not isinstance(value, str) or len(value) > max_chars:
        raise ProtocolError(f"header field '{field}' must be a string of at most {max_chars} characters, "
                            f"got {_describe(value)}")
    if not is_utf8(value):
        raise ProtocolError(f"header field '{field}' holds a lone UTF-16 surrogate, which UTF-8 cannot carry")
    return value


def is_utf8(text: str) -> bool:
    """False for strings holding lone surrogates (JSON "\\ud800" escapes decode to them)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_job(value: object, field: str = "job") -> str:
    if not is_job_id(value):
        raise ProtocolError(f"header field '{field}' must be a string of at most {MAX_JOB_ID_CHARS} characters "
                            f"from {NAME_CHARS} (starting with a letter or digit), got {_describe(value)}",
                            job=None)
    return value


def check_name(value: object, field: str) -> str:
    if not is_name(value):
        raise ProtocolError(f"header field '{field}' must be a name of 1 to {MAX_NAME_CHARS} characters "
                            f"from {NAME_CHARS}, got {_describe(value)}")
    return value


def check_number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProtocolError(f"header field '{field}' must be a finite number, got {_describe(value)}")
    return float(value)


def check_metrics(value: object, field: str) -> dict[str, float | None]:
    if not isinstance(value, dict) or len(value) > MAX_METRICS:
        raise ProtocolError(f"header field '{field}' must be an object of at most {MAX_METRICS} name -> number")
    out: dict[str, float | None] = {}
    for key, number in value.items():
        check_name(key, f"{field} key")
        # null stands for a non-finite value (a diverged loss): JSON has no NaN.
        out[key] = None if number is None else check_number(number, f"{field}.{key}")
    return out


def check_json(value: object, field: str, depth: int = 0) -> None:
    """Checks a free-form JSON value: bounded depth, bounded strings and keys, finite numbers."""
    if depth > MAX_JSON_DEPTH:
        raise ProtocolError(f"header field '{field}' nests deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not 0 < len(key) <= MAX_NAME_CHARS or not is_utf8(key):
                raise ProtocolError(f"header field '{field}' has key {_describe(key)}; keys must be strings of "
                                    f"1 to {MAX_NAME_CHARS} characters")
            check_json(item, f"{field}.{key}", depth + 1)
    elif isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS * 64:
            raise ProtocolError(f"header field '{field}' is a list of {len(value)} items; send big data as an array")
        for item in value:
            check_json(item, f"{field}[]", depth + 1)
    elif isinstance(value, str):
        check_string(value, field)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ProtocolError(f"header field '{field}' must be finite, got {value!r}")
    elif value is not None and not isinstance(value, (bool, int)):
        raise ProtocolError(f"header field '{field}' holds a {type(value).__name__}, which JSON cannot carry")
