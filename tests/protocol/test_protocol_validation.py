"""Every rejected input raises ProtocolError with a message naming the field and the problem."""

from __future__ import annotations

import json

import pytest
from protocol_samples import PNG, cube_payload

from shared_protocol import (
    PROTOCOL_VERSION, Array, Error, Hello, MeshPayload, Progress, ProtocolError, Result, Status, Submit, from_frames,
    to_frames,
)
from shared_protocol.limits import MAX_FRAMES, MAX_HEADER_BYTES, MAX_JSON_DEPTH, MAX_STRING


def header(**fields) -> bytes:
    return json.dumps({"protocol": PROTOCOL_VERSION, **fields}).encode()


def rejects(frames, *words, code="bad_message", **kwargs) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        from_frames(frames, **kwargs)
    for word in words:
        assert word in info.value.message, info.value.message
    assert info.value.code == code
    return info.value


def submit_frames(**mesh_override) -> list[bytes]:
    """A valid render submit with a cube, as raw frames, with header mesh fields replaced."""
    frames = to_frames(Submit(job="j", kind="render", mesh=cube_payload()))
    head = json.loads(frames[0])
    head["mesh"].update(mesh_override)
    return [json.dumps(head).encode(), *frames[1:]]


# -- framing and header ---------------------------------------------------------------------------------

def test_no_frames():
    rejects([], "at least one frame")


def test_too_many_frames():
    rejects([header(type="status")] + [b"x"] * MAX_FRAMES, f"{MAX_FRAMES + 1} frames", f"{MAX_FRAMES} limit",
            code="too_large")


def test_frame_not_bytes():
    rejects([header(type="status"), "text"], "frame 1 is a str")


def test_bad_json():
    rejects([b'{"protocol": 1, "type": '], "not valid JSON")


def test_bad_utf8():
    rejects([b'{"type": "\xff"}'], "not valid UTF-8")


@pytest.mark.parametrize("body", [b"[1, 2]", b'"status"', b"3", b"null"])
def test_header_not_an_object(body):
    rejects([body], "must be a JSON object")


def test_nan_and_infinity_are_not_json():
    rejects([b'{"protocol": 1, "type": "progress", "job": "j", "step": 1, "total": 2, "eta_s": NaN}'], "NaN")
    rejects([b'{"protocol": 1, "type": "status", "x": Infinity}'], "Infinity")


def test_huge_number_becomes_infinity_and_is_rejected():
    rejects([b'{"protocol": 1, "type": "progress", "job": "j", "step": 1, "total": 2, "eta_s": 1e999}'],
            "'eta_s'", "finite")


def test_duplicate_keys():
    rejects([b'{"protocol": 1, "type": "status", "type": "hello"}'], "'type' twice")


def test_deep_nesting_of_json():
    rejects([b'{"protocol": 1, "type": "status", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"],
            "nests too deeply")


def test_deep_nesting_of_params():
    params = current = {}
    for _ in range(MAX_JSON_DEPTH + 2):
        current["a"] = {}
        current = current["a"]
    rejects([header(type="submit", job="j", kind="render", params=params)], "'params", "deeper")


def test_header_too_large():
    rejects([header(type="hello", client="x" * MAX_HEADER_BYTES)], "header is", "limit", code="too_large")


def test_missing_protocol():
    rejects([json.dumps({"type": "status"}).encode()], "'protocol' is missing", f"speaks {PROTOCOL_VERSION}")


def test_protocol_not_an_integer():
    rejects([json.dumps({"protocol": "1", "type": "status"}).encode()], "'protocol' must be an integer")
    rejects([json.dumps({"protocol": True, "type": "status"}).encode()], "'protocol' must be an integer")


def test_wrong_protocol_names_both_versions():
    exc = rejects([json.dumps({"protocol": 99, "type": "hello"}).encode()], "protocol 99", str(PROTOCOL_VERSION),
                  code="protocol_mismatch")
    assert exc.peer_protocol == 99 and "same Atelier release" in exc.hint


def test_missing_type():
    rejects([header()], "'type' must be a string")


def test_unknown_type():
    exc = rejects([header(type="render_now")], "'render_now'", "not a message type", "hello", code="unknown_type")
    assert exc.job is None


def test_unknown_field():
    rejects([header(type="status", colour="red")], "'colour' is not part of a 'status' message")


def test_missing_required_field():
    rejects([header(type="cancel")], "'job' is missing from the 'cancel' message")


# -- typed fields -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("job", ["", "x" * 65, "has space", "-leading", 7, None, "é"])
def test_bad_job_id(job):
    rejects([header(type="cancel", job=job)], "header field 'job' must be a string of at most 64 characters")


def test_overlong_string():
    rejects([header(type="error", code="internal", message="m" * (MAX_STRING + 1))],
            "'message' must be a string of at most 4096 characters")


def test_overlong_string_inside_params():
    rejects([header(type="submit", job="j", kind="render", params={"prompt": "p" * (MAX_STRING + 1)})],
            "'params.prompt' must be a string")


def test_lone_surrogates_are_rejected_both_ways():
    rejects([b'{"protocol": 1, "type": "hello", "client": "\\ud800"}'], "'client'", "surrogate")
    rejects([b'{"protocol": 1, "type": "submit", "job": "j", "kind": "k", "params": {"\\udc00": 1}}'], "'params'")
    with pytest.raises(ProtocolError, match="surrogate"):
        to_frames(Hello(client="\ud800"))


def test_bad_error_code():
    rejects([header(type="error", code="Not A Code", message="m")], "'code' must be a lower-case code")


@pytest.mark.parametrize("value", [-1, True, 1.5, "3", None])
def test_bad_integer(value):
    rejects([header(type="accepted", job="j", position=value)], "'position' must be an integer")


def test_bool_is_not_a_boolean_string():
    rejects([header(type="status", busy="yes")], "'busy' must be true or false")


def test_negative_eta():
    rejects([header(type="progress", job="j", step=1, total=2, eta_s=-1)], "'eta_s' must be >= 0")


def test_bad_metrics():
    rejects([header(type="progress", job="j", step=1, total=2, metrics={"loss": "low"})], "'metrics.loss'")
    rejects([header(type="progress", job="j", step=1, total=2, metrics={"a b": 1})], "'metrics key'")


def test_bad_name_list():
    rejects([header(type="status", queue=["ok", "not ok"])], "'queue[]'")


def test_job_id_is_kept_on_errors_when_readable():
    exc = rejects([header(type="submit", job="j7", kind="bad kind!")], "'kind'")
    assert exc.job == "j7"


# -- blobs and arrays ---------------------------------------------------------------------------------------

def test_blob_index_out_of_range():
    rejects([header(type="progress", job="j", step=1, total=2, preview={"blob": 3}), PNG],
            "refers to blob 3", "carries 1 blob")


def test_blob_ref_not_a_ref():
    rejects([header(type="progress", job="j", step=1, total=2, preview=0), PNG], "must be a blob ref")


def test_blob_referenced_twice():
    rejects([header(type="result", job="j", kind="render", blobs={"a": {"blob": 0}, "b": {"blob": 0}}), PNG],
            "blob 0 is referenced twice")


def test_unreferenced_blob():
    rejects([header(type="status"), b"stray"], "blob 0 (frame 1) is not referenced")


def test_blob_over_the_limit():
    frames = [header(type="result", job="j", kind="render", blobs={"a": {"blob": 0}, "b": {"blob": 1}, "c": {"blob": 2}}),
              b"1", b"2", b"x" * 1001]
    rejects(frames, "blob 2 is 1001 bytes, over the 1000 limit", code="too_large", max_blob_bytes=1000)
    assert len(from_frames(frames).blobs) == 3


def test_bad_png_signature():
    rejects([header(type="progress", job="j", step=1, total=2, preview={"blob": 0}), b"GIF89a..."],
            "blob 0 for 'preview' is not a PNG")


def test_wrong_dtype():
    rejects(submit_frames(vertices={"blob": 0, "dtype": "float64", "shape": [8, 3]}),
            "dtype 'float64'", "float32, int32, uint8")


def test_dtype_mismatch_for_the_field():
    frames = submit_frames(faces={"blob": 1, "dtype": "float32", "shape": [12, 3]})
    rejects(frames, "'mesh.faces' must be a 2-D int32 array")


def test_shape_and_byte_length_mismatch():
    rejects(submit_frames(vertices={"blob": 0, "dtype": "float32", "shape": [9, 3]}),
            "'mesh.vertices'", "needs 108 bytes, but its blob has 96")


@pytest.mark.parametrize("shape", [[-8, 3], [8, 3.0], [True, 3], "8x3", [1] * 9])
def test_bad_shapes(shape):
    rejects(submit_frames(vertices={"blob": 0, "dtype": "float32", "shape": shape}), "shape")


def test_array_ref_with_unknown_keys():
    rejects(submit_frames(vertices={"blob": 0, "dtype": "float32", "shape": [8, 3], "order": "F"}), "unknown keys")


def test_array_constructor_validates():
    with pytest.raises(ProtocolError, match="needs 12 bytes"):
        Array("float32", (3,), b"\x00" * 8)
    with pytest.raises(ProtocolError, match="dtype"):
        Array("float16", (1,), b"\x00\x00")
    with pytest.raises(ProtocolError, match="ragged"):
        Array.from_list([[1, 2], [3]], "float32")


# -- mesh payloads ------------------------------------------------------------------------------------------

def test_faces_must_be_triangles():
    with pytest.raises(ProtocolError, match=r"'mesh.faces' must have shape \(F, 3\).*triangulate"):
        cube_payload(faces=Array.from_list([[0, 1, 2, 3]], "int32"))


def test_vertices_must_have_three_columns():
    with pytest.raises(ProtocolError, match=r"'mesh.vertices' must have shape \(N, 3\)"):
        cube_payload(vertices=Array.from_list([[0.0, 0.0]] * 8, "float32"))


def test_uv_rows_must_match_vertices_or_corners():
    with pytest.raises(ProtocolError, match=r"'mesh.uv' must have shape \(N, 2\) = \(8, 2\) or \(3F, 2\) = \(36, 2\)"):
        cube_payload(uv=Array.from_list([[0.0, 0.0]] * 10, "float32"))
    with pytest.raises(ProtocolError, match="per-corner so needs 36 rows"):
        cube_payload(uv=Array.from_list([[0.0, 0.0]] * 8, "float32"), uv_domain="corner")


def test_vertex_colors_shape():
    with pytest.raises(ProtocolError, match="vertex_colors"):
        cube_payload(vertex_colors=Array.from_list([[0.0, 0.0]] * 8, "float32"))


def test_texture_must_be_png():
    with pytest.raises(ProtocolError, match="'mesh.texture' must be PNG"):
        cube_payload(texture=b"\xff\xd8\xff\xe0 jpeg")
    rejects([*submit_frames(texture={"blob": 2}), b"\xff\xd8\xff\xe0 jpeg"], "blob 2 for 'mesh.texture' is not a PNG")


@pytest.mark.parametrize("transform", [(1.0,) * 15, (float("nan"),) * 16, ("1",) * 16])
def test_transform(transform):
    with pytest.raises(ProtocolError, match="'mesh.transform' must be 16 finite numbers"):
        cube_payload(transform=transform)


def test_mesh_vertex_limit(monkeypatch):
    import shared_protocol.mesh as mesh_module

    monkeypatch.setattr(mesh_module, "MAX_VERTICES", 4)
    with pytest.raises(ProtocolError, match="N <= 4"):
        cube_payload()


def test_unknown_mesh_field():
    rejects(submit_frames(normals={"blob": 0}), "'mesh.normals' is not part of a mesh payload")


# -- encoding refuses what decoding would refuse -----------------------------------------------------------

def test_encoding_validates_too():
    with pytest.raises(ProtocolError, match="'job' must be a string"):
        to_frames(Submit(job="bad id", kind="render"))
    with pytest.raises(ProtocolError, match="cannot be JSON-encoded"):
        to_frames(Result(job="j", kind="render", fields={"x": float("nan")}))
    with pytest.raises(ProtocolError, match="cannot be JSON-encoded"):
        to_frames(Result(job="j", kind="render", fields={"x": object()}))
    with pytest.raises(ProtocolError, match="'preview' must be bytes"):
        to_frames(Progress(job="j", step=1, total=1, preview="not bytes"))
    with pytest.raises(ProtocolError, match="not a protocol message"):
        to_frames("status")
    with pytest.raises(ProtocolError, match="'mesh' must be a MeshPayload"):
        to_frames(Submit(job="j", kind="render", mesh={"vertices": []}))
    with pytest.raises(ProtocolError, match="'running'"):
        to_frames(Status(running="has space"))
    assert from_frames(to_frames(Hello())) == Hello()
    assert isinstance(from_frames(to_frames(Error(code="x", message="m"))), Error)
    assert isinstance(cube_payload(), MeshPayload)
