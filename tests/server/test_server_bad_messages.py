"""Malformed, oversized and unknown messages get an error reply (or are dropped); the server keeps serving."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_helpers import MAX_BLOB_BYTES, status

from backend.server.client import Client
from shared_protocol import MESSAGE_TYPES, PROTOCOL_VERSION, Cancel, Error, Status, from_frames

pytestmark = pytest.mark.timeout(60)


def header(**fields) -> bytes:
    return json.dumps({"protocol": PROTOCOL_VERSION, **fields}).encode()


def assert_refused(client, frames, code="bad_message", *words, job=None) -> Error:
    client.send_frames(frames)
    reply = client.recv(5)
    assert isinstance(reply, Error), reply
    assert reply.code == code and reply.job == job, reply
    for word in words:
        assert word in reply.message, reply.message
    assert isinstance(status(client), Status)
    return reply


def test_garbage_frames(client):
    assert_refused(client, [b"\xff\xfegarbage", b"more"], "bad_message", "not valid UTF-8")


def test_non_json_header(client):
    assert_refused(client, [b"{not json"], "bad_message", "not valid JSON")


def test_header_not_an_object(client):
    assert_refused(client, [b"[1, 2, 3]"], "bad_message", "must be a JSON object")


def test_missing_protocol(client):
    assert_refused(client, [json.dumps({"type": "status"}).encode()], "bad_message", "'protocol' is missing")


def test_unknown_message_type(client):
    assert_refused(client, [header(type="teleport")], "unknown_type", "'teleport'")


def test_bad_field_names_the_job(client):
    assert_refused(client, [header(type="submit", job="j9", kind="render", params=[1])], "bad_message",
                   "'params' must be a JSON object", job="j9")


def test_empty_frame(client):
    assert_refused(client, [b""], "bad_message", "not valid JSON")


def test_blob_over_the_servers_limit_gets_too_large(client):
    frames = [header(type="submit", job="big", kind="echo", blobs={"x": {"blob": 0}}),
              b"\x00" * (MAX_BLOB_BYTES + MAX_BLOB_BYTES // 2)]
    assert_refused(client, frames, "too_large", f"over the {MAX_BLOB_BYTES} limit", job="big")


def test_blob_far_over_the_limit_is_cut_off_and_the_client_reconnects(client):
    # libzmq drops the connection for frames over 2x the limit, before they fill memory.
    client.send_frames([header(type="submit", job="huge", kind="echo", blobs={"x": {"blob": 0}}),
                        b"\x00" * (3 * MAX_BLOB_BYTES)])
    assert client.recv(1.0) is None
    assert isinstance(status(client, timeout=10), Status)


def test_a_fresh_client_is_served_after_all_that(server):
    with Client(server.endpoint) as fresh:
        assert isinstance(status(fresh), Status)


FUZZ_TYPES = [t for t in MESSAGE_TYPES if t not in ("submit", "shutdown")] + ["nope", ""]
fuzz_headers = st.fixed_dictionaries(
    {"protocol": st.sampled_from([PROTOCOL_VERSION, PROTOCOL_VERSION, 0, "1"]), "type": st.sampled_from(FUZZ_TYPES)},
    optional={"job": st.text(max_size=70), "code": st.text(max_size=5), "message": st.text(max_size=10),
              "step": st.integers(-5, 5), "queue": st.lists(st.text(max_size=5), max_size=3),
              "preview": st.fixed_dictionaries({"blob": st.integers(-1, 2)})}).map(lambda h: json.dumps(h).encode())
fuzz_frames = st.lists(st.one_of(fuzz_headers, st.binary(max_size=40)), min_size=1, max_size=4)


MARKERS = iter(range(10**6))


@settings(max_examples=50, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(frames=fuzz_frames)
def test_random_frames_at_the_live_server(client, frames):
    marker = f"fuzz-marker-{next(MARKERS)}"
    client.send_frames(frames)
    client.send(Cancel(job=marker))  # answered with unknown_job, after whatever the random frames provoked
    for _ in range(5):
        reply_frames = client.recv_frames(5)
        assert reply_frames is not None, "the server stopped answering"
        reply = from_frames(reply_frames)  # every reply decodes
        if isinstance(reply, Error) and reply.job == marker:
            assert reply.code == "unknown_job"
            return
        assert isinstance(reply, (Error, Status)) or reply.TYPE in ("welcome", "release"), reply
    raise AssertionError("the marker's reply never came")


def test_still_serving_after_the_fuzz(client):
    assert isinstance(status(client), Status)
