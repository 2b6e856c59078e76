"""A real backend process on loopback shared by the client-server tests, and a per-test client."""

from __future__ import annotations

import time

import pytest
from server_helpers import MAX_BLOB_BYTES, MAX_QUEUE, RunningServer, start_server, status, stop_server

from backend.server.client import Client
from shared_protocol import Cancel


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> RunningServer:
    running = start_server(tmp_path_factory.mktemp("backend"), "--test-jobs", "--max-blob-bytes", str(MAX_BLOB_BYTES),
                           "--max-queue", str(MAX_QUEUE))
    yield running
    assert stop_server(running) == 0, running.stderr()


@pytest.fixture
def client(server) -> Client:
    """A fresh DEALER; on teardown its leftover jobs are cancelled so the next test finds the server idle."""
    with Client(server.endpoint) as c:
        yield c
        state = status(c)
        for job in [*state.queue, *([state.running] if state.running else [])]:
            c.send(Cancel(job=job))
        for _ in range(200):
            state = status(c)
            # Not busy either: a cancelled job is answered at once but may still be unwinding in the worker.
            if state.running is None and not state.queue and not state.busy:
                break
            time.sleep(0.05)
        assert state.running is None and not state.queue and not state.busy, \
            "a test left a job running on the shared server"


@pytest.fixture
def make_client(server):
    """Opens more clients on the shared server (closed at the end of the test)."""
    opened = []

    def make() -> Client:
        opened.append(Client(server.endpoint))
        return opened[-1]

    yield make
    for c in opened:
        c.close()
