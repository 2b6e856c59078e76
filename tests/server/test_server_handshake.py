"""hello/welcome, protocol mismatch, status, release: the conversation before and around jobs."""

from __future__ import annotations

from pathlib import Path

import pytest
from server_helpers import MAX_BLOB_BYTES, status

from shared_protocol import PROTOCOL_VERSION, Accepted, Error, Hello, Release, Status, Welcome

pytestmark = pytest.mark.timeout(30)


def test_hello_gets_welcome(client, server):
    welcome = client.request(Hello(client="pytest"))
    assert isinstance(welcome, Welcome)
    assert welcome.device == "cpu" and welcome.renderer == "torch" and welcome.server
    assert {"render", "echo", "sleep", "fail"} <= set(welcome.job_kinds)
    assert welcome.max_blob_bytes == MAX_BLOB_BYTES
    assert Path(welcome.log_path) == server.log_path and server.log_path.exists()
    assert "hello from" in server.log_path.read_text()


@pytest.mark.parametrize("theirs, fix", [(PROTOCOL_VERSION + 1, "update the Atelier backend"),
                                         (PROTOCOL_VERSION - 1, "update the Blender add-on")])
def test_wrong_protocol_is_refused_with_both_versions_and_the_fix(client, theirs, fix):
    client.send(Hello(client="from the future"), protocol=theirs)
    error = client.recv(5)
    assert isinstance(error, Error) and error.code == "protocol_mismatch"
    assert f"protocol {theirs}" in error.message and f"protocol {PROTOCOL_VERSION}" in error.message
    assert fix in error.hint
    assert isinstance(client.request(Hello()), Welcome)


def test_status_when_idle(client):
    reply = status(client)
    assert reply == Status(queue=[], running=None, busy=False, queued_total=0, device="cpu")


def test_release_is_acknowledged(client):
    assert client.request(Release()) == Release()


def test_server_only_messages_from_a_client_are_refused(client):
    reply = client.request(Accepted(job="j", position=0))
    assert isinstance(reply, Error) and reply.code == "bad_message" and "cannot send a 'accepted'" in reply.message
    assert reply.job == "j"
    reply = client.request(Welcome(server="x", device="cpu", renderer="torch"))
    assert isinstance(reply, Error) and reply.code == "bad_message"
