"""Starting and stopping: shutdown with jobs in flight, SIGTERM, a port already taken."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from server_helpers import ROOT, start_server

from backend.server.client import Client
from shared_protocol import Accepted, Error, Shutdown, Submit

pytestmark = pytest.mark.timeout(60)


def test_shutdown_cancels_running_and_queued_jobs_and_exits_cleanly(tmp_path):
    server = start_server(tmp_path, "--test-jobs")
    with Client(server.endpoint) as c:
        c.send(Submit(job="running", kind="sleep", params={"steps": 10_000, "seconds": 0.01}))
        c.send(Submit(job="queued", kind="echo"))
        assert [c.recv(5), c.recv(5)] == [Accepted(job="running", position=0), Accepted(job="queued", position=1)]
        c.send(Shutdown())
        endings = {}
        while not {"ack", "running", "queued"} <= set(endings):
            msg = c.recv(10)
            assert msg is not None, f"missing replies, got {endings}"
            if isinstance(msg, Shutdown):
                endings["ack"] = msg
            elif isinstance(msg, Error):
                endings[msg.job] = msg.code
        assert endings["running"] == "cancelled" and endings["queued"] == "shutdown"
    assert server.process.wait(15) == 0, server.stderr()
    assert "stopped" in server.log_path.read_text()


@pytest.mark.skipif(sys.platform == "win32", reason="no SIGTERM on Windows")
def test_sigterm_stops_the_server(tmp_path):
    server = start_server(tmp_path)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(15) == 0, server.stderr()
    assert "stopped" in server.log_path.read_text()


def test_a_taken_port_is_a_one_line_error(tmp_path):
    first = start_server(tmp_path / "first")
    try:
        out = subprocess.run([sys.executable, "-m", "backend.server", "--bind", first.endpoint, "--device", "cpu",
                              "--log", str(tmp_path / "second.log")],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
        assert "cannot listen on" in out.stderr and "pick another --bind port" in out.stderr
        assert "Traceback" not in out.stderr
    finally:
        first.process.send_signal(signal.SIGINT)
        assert first.process.wait(15) == 0
