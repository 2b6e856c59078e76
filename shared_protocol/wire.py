"""Messages <-> ZeroMQ multipart frames: frame 0 a UTF-8 JSON header, frames 1..n binary blobs.

The header always carries `protocol` and `type`. Blob refs in the header are `{"blob": i}` (plus
`dtype` and `shape` for arrays) where i is the 0-based blob index, i.e. frame i + 1. Every blob must be
referenced exactly once. No pickle: nothing in a message can run code.
"""

from __future__ import annotations

import json

from shared_protocol.errors import ProtocolError
from shared_protocol.fields import HeaderReader, HeaderWriter, is_job_id
from shared_protocol.limits import MAX_BLOB_BYTES, MAX_FRAMES, MAX_HEADER_BYTES, PROTOCOL_VERSION
from shared_protocol.messages import MESSAGE_TYPES, Message


def to_frames(msg: Message, *, protocol: int = PROTOCOL_VERSION) -> list[bytes]:
    """Encodes a message; raises `ProtocolError` for anything `from_frames` would reject on the other side.

    `protocol` exists so tests can speak a wrong version; leave it alone otherwise.
    """
    cls = type(msg)
    if MESSAGE_TYPES.get(getattr(cls, "TYPE", None)) is not cls:
        raise ProtocolError(f"{cls.__name__} is not a protocol message; use one of the shared_protocol dataclasses")
    writer = HeaderWriter()
    header = {"protocol": protocol, "type": cls.TYPE, **msg.to_header(writer)}
    try:
        text = json.dumps(header, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"the '{cls.TYPE}' header cannot be JSON-encoded ({exc}); send plain str/int/float/"
                            "bool/list/dict values, finite numbers only") from exc
    try:
        frames = [text.encode("utf-8"), *writer.blobs]
    except UnicodeEncodeError as exc:
        raise ProtocolError(f"the '{cls.TYPE}' header holds a lone UTF-16 surrogate ({exc.reason}); "
                            "send valid Unicode text") from exc
    # Decode what we built: a message this side sends is one the other side accepts.
    from_frames(frames, expect_protocol=protocol)
    return frames


def from_frames(frames: "list[bytes]", *, max_blob_bytes: int = MAX_BLOB_BYTES,
                expect_protocol: int = PROTOCOL_VERSION) -> Message:
    """Decodes and validates a multipart message; raises `ProtocolError` naming the field and the problem.

    `max_blob_bytes` lets a server accept less than the protocol allows. An `error` message is decoded
    whatever its protocol version, so a client can show why the other side refused it.
    """
    if not isinstance(frames, (list, tuple)) or not frames:
        raise ProtocolError("a message needs at least one frame (the JSON header)")
    if len(frames) > MAX_FRAMES:
        raise ProtocolError(f"message has {len(frames)} frames, over the {MAX_FRAMES} limit", code="too_large")
    for i, frame in enumerate(frames):
        if not isinstance(frame, (bytes, bytearray, memoryview)):
            raise ProtocolError(f"frame {i} is a {type(frame).__name__}, not bytes")
    header_bytes, blobs = frames[0], [b if isinstance(b, bytes) else bytes(b) for b in frames[1:]]
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header is {len(header_bytes)} bytes, over the {MAX_HEADER_BYTES} limit; "
                            "send large data as blobs", code="too_large")
    header = _parse_header(bytes(header_bytes))
    job = header.get("job") if is_job_id(header.get("job")) else None
    for i, blob in enumerate(blobs):
        if len(blob) > max_blob_bytes:
            raise ProtocolError(f"blob {i} is {len(blob)} bytes, over the {max_blob_bytes} limit", code="too_large",
                                job=job)
    try:
        return _decode(header, blobs, expect_protocol)
    except ProtocolError as exc:
        exc.job = exc.job or job
        raise


def _parse_header(data: bytes) -> dict:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"header is not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        header = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)
    except ProtocolError:
        raise
    except RecursionError as exc:
        raise ProtocolError("header JSON nests too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, and ints too long to convert
        raise ProtocolError(f"header is not valid JSON ({str(exc)[:120]})") from exc
    if not isinstance(header, dict):
        raise ProtocolError(f"header must be a JSON object, got a JSON {type(header).__name__}")
    return header


def _reject_constant(name: str) -> None:
    raise ProtocolError(f"header holds {name}, which is not JSON; send finite numbers (or null)")


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ProtocolError(f"header has the key {dup[:64]!r} twice")
    return out


def _decode(header: dict, blobs: list[bytes], expect_protocol: int) -> Message:
    if "protocol" not in header:
        raise ProtocolError("header field 'protocol' is missing; every message carries the protocol version "
                            f"(this side speaks {expect_protocol})")
    protocol = header["protocol"]
    if isinstance(protocol, bool) or not isinstance(protocol, int):
        raise ProtocolError(f"header field 'protocol' must be an integer, got {protocol!r:.40}")
    msg_type = header.get("type")
    if not isinstance(msg_type, str):
        raise ProtocolError(f"header field 'type' must be a string naming the message type, got {msg_type!r:.40}")
    if protocol != expect_protocol and msg_type != "error":
        raise ProtocolError(
            f"protocol mismatch: the message speaks Atelier protocol {protocol}, this side speaks {expect_protocol}",
            code="protocol_mismatch", peer_protocol=protocol,
            hint="install the same Atelier release of the Blender add-on and the backend")
    cls = MESSAGE_TYPES.get(msg_type)
    if cls is None:
        raise ProtocolError(f"header field 'type' is {msg_type[:64]!r}, which is not a message type; expected one of "
                            f"{', '.join(MESSAGE_TYPES)}", code="unknown_type")
    reader = HeaderReader(header, blobs, msg_type)
    msg = cls.from_header(reader)
    reader.finish()
    return msg
