"""Property tests: any frames either decode to a message that re-encodes identically, or raise ProtocolError."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared_protocol import MESSAGE_TYPES, Array, MeshPayload, Progress, ProtocolError, Submit, from_frames, to_frames
from shared_protocol.limits import PNG_SIGNATURE

FIELDS = ["job", "kind", "params", "mesh", "arrays", "blobs", "fields", "stage", "step", "total", "eta_s", "metrics",
          "preview", "code", "message", "hint", "queue", "running", "busy", "queued_total", "device", "position",
          "client", "server", "renderer", "job_kinds", "models", "log_path", "max_blob_bytes"]
MESH_FIELDS = ["vertices", "faces", "uv", "uv_domain", "vertex_colors", "texture", "transform"]

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True),
                         st.text(max_size=20), st.sampled_from(["render", "j1", "float32", "uint8", "vertex"]))
blob_refs = st.fixed_dictionaries({"blob": st.integers(-1, 4)}, optional={
    "dtype": st.sampled_from(["float32", "int32", "uint8", "float64", 3]),
    "shape": st.lists(st.integers(-1, 5), max_size=3)})
json_values = st.recursive(json_scalars | blob_refs, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8) | st.sampled_from(FIELDS + MESH_FIELDS), inner,
                                             max_size=4), max_leaves=12)
headers = st.fixed_dictionaries(
    {},
    optional={"protocol": st.sampled_from([1, 1, 1, 0, 2, "1", True, None]),
              "type": st.sampled_from(list(MESSAGE_TYPES) + ["", "nope", 1]),
              **{name: json_values for name in FIELDS},
              "mesh": st.dictionaries(st.sampled_from(MESH_FIELDS), json_values | blob_refs, max_size=7)})
blobs = st.lists(st.binary(max_size=64) | st.just(PNG_SIGNATURE + b"rest") | st.just(b"\x00" * 96), max_size=4)
raw_headers = st.one_of(headers.map(lambda h: json.dumps(h).encode()), st.binary(max_size=64),
                        st.text(max_size=64).map(str.encode))


def _decode_or_protocol_error(frames):
    try:
        msg = from_frames(frames)
    except ProtocolError as exc:
        assert exc.message and exc.code
        return
    # Whatever decodes re-encodes to the same message.
    assert from_frames(to_frames(msg)) == msg


@settings(max_examples=400, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_headers, blobs)
def test_random_frames_decode_or_raise_protocol_error(header, extra):
    _decode_or_protocol_error([header, *extra])


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.lists(st.binary(max_size=32), min_size=0, max_size=6))
def test_random_binary_frames(frames):
    _decode_or_protocol_error(frames)


def _arrays(dtype: str, rows: int, cols: int):
    return st.lists(st.lists(st.floats(-1e6, 1e6, width=32) if dtype == "float32" else st.integers(0, 7),
                             min_size=cols, max_size=cols), min_size=rows, max_size=rows).map(
        lambda values: Array.from_list(values, dtype, (rows, cols)))


@st.composite
def meshes(draw):
    n, f = draw(st.integers(1, 8)), draw(st.integers(0, 6))
    uv_rows = draw(st.sampled_from([None, n, 3 * f]))
    return MeshPayload(
        vertices=draw(_arrays("float32", n, 3)), faces=draw(_arrays("int32", f, 3)),
        uv=None if uv_rows is None else draw(_arrays("float32", uv_rows, 2)),
        uv_domain="auto" if uv_rows is None else ("vertex" if uv_rows == n else "corner"),
        vertex_colors=draw(st.none() | _arrays("float32", n, draw(st.sampled_from([3, 4])))),
        texture=draw(st.none() | st.binary(max_size=16).map(lambda b: PNG_SIGNATURE + b)),
        transform=tuple(draw(st.lists(st.floats(-100, 100), min_size=16, max_size=16))))


job_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", fullmatch=True)
params = st.dictionaries(st.text(min_size=1, max_size=10), st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30), lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(min_size=1, max_size=5), inner, max_size=3), max_leaves=8), max_size=4)


@settings(max_examples=150, derandomize=True, deadline=None)
@given(job_ids, params, st.none() | meshes())
def test_valid_submits_round_trip(job, params, mesh):
    msg = Submit(job=job, kind="render", params=params, mesh=mesh)
    assert from_frames(to_frames(msg)) == msg


@settings(max_examples=100, derandomize=True, deadline=None)
@given(job_ids, st.integers(0, 10**6), st.integers(0, 10**6), st.none() | st.floats(0, 1e9),
       st.dictionaries(st.from_regex(r"[a-z_]{1,10}", fullmatch=True), st.none() | st.floats(-1e9, 1e9), max_size=5))
def test_valid_progress_round_trips(job, step, total, eta, metrics):
    msg = Progress(job=job, stage="optimize", step=step, total=total, eta_s=eta, metrics=metrics)
    assert from_frames(to_frames(msg)) == msg
