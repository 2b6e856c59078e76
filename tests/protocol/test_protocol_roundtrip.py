"""Every message type survives to_frames -> from_frames unchanged; arrays keep their bytes and values."""

from __future__ import annotations

import json
import struct

import pytest
from protocol_samples import CUBE_FACES, CUBE_VERTICES, PNG, cube_payload, sample_messages

from shared_protocol import MESSAGE_TYPES, PROTOCOL_VERSION, Array, Error, Submit, from_frames, to_frames


@pytest.mark.parametrize("msg", sample_messages(), ids=lambda m: type(m).__name__)
def test_round_trip(msg):
    frames = to_frames(msg)
    assert all(isinstance(f, bytes) for f in frames)
    header = json.loads(frames[0])
    assert header["protocol"] == PROTOCOL_VERSION and header["type"] == msg.TYPE
    assert from_frames(frames) == msg


def test_every_message_type_is_sampled():
    assert {m.TYPE for m in sample_messages()} == set(MESSAGE_TYPES)


def test_blob_refs_index_the_frames_after_the_header():
    frames = to_frames(Submit(job="j", kind="render", mesh=cube_payload(texture=PNG)))
    mesh = json.loads(frames[0])["mesh"]
    assert mesh["vertices"] == {"blob": 0, "dtype": "float32", "shape": [8, 3]}
    assert mesh["faces"] == {"blob": 1, "dtype": "int32", "shape": [12, 3]}
    assert frames[1] == struct.pack("<24f", *[c for v in CUBE_VERTICES for c in v])
    assert frames[2] == struct.pack("<36i", *[i for f in CUBE_FACES for i in f])
    assert frames[mesh["texture"]["blob"] + 1] == PNG


def test_array_helpers_are_little_endian_and_nested():
    arr = Array.from_list([[1.5, -2.0], [3.0, 4.25]], "float32")
    assert arr.shape == (2, 2) and arr.data == struct.pack("<4f", 1.5, -2.0, 3.0, 4.25)
    assert arr.to_list() == [[1.5, -2.0], [3.0, 4.25]]
    assert Array.from_list([7, -8], "int32").to_array().tolist() == [7, -8]
    assert Array.from_list([], "uint8").shape == (0,)
    assert Array("float32", (0, 3), b"").to_list() == []
    assert Array("uint8", (2, 0), b"").to_list() == [[], []]


def test_auto_uv_domain_resolves_by_row_count():
    per_vertex = cube_payload(uv=Array.from_list([[0.0, 0.0]] * 8, "float32"))
    per_corner = cube_payload(uv=Array.from_list([[0.0, 0.0]] * 36, "float32"))
    assert (per_vertex.uv_domain, per_corner.uv_domain) == ("vertex", "corner")


def test_error_of_another_protocol_version_still_decodes():
    # So a client can show *why* a newer/older backend refused it.
    frames = to_frames(Error(code="protocol_mismatch", message="update"), protocol=PROTOCOL_VERSION + 1)
    assert from_frames(frames).message == "update"
