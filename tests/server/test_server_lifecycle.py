"""Starting and stopping: shutdown with jobs in flight, SIGTERM, a port already taken."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from server_helpers import ROOT, start_server

from backend.server.client import Client
from shared_protocol import Accepted, Error, Progress, Shutdown, Submit

pytestmark = pytest.mark.timeout(60)


def test_shutdown_cancels_running_and_queued_jobs_and_exits_cleanly(tmp_path):
    server = start_server(tmp_path, "--test-jobs")
    with Client(server.endpoint) as c:
        c.send(Submit(job="running", kind="sleep", params={"steps": 10_000, "seconds": 0.01}))
        c.send(Submit(job="queued", kind="echo"))
        assert [c.recv(5), c.recv(5)] == [Accepted(job="running", position=0), Accepted(job="queued", position=1)]
        first = c.recv(10)  # wait until the worker runs it: on a loaded machine it may still be queued
        assert isinstance(first, Progress) and first.job == "running", first
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


def test_the_server_stops_when_the_watched_process_is_gone(tmp_path):
    """A backend started with --watch-pid (the add-on passes Blender's pid) stops by itself, even in the middle
    of a job, once that process is gone: a crashed Blender leaves nothing computing."""
    import os
    import time

    from backend.server.watch import process_alive

    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    server = start_server(tmp_path, "--test-jobs", "--watch-pid", str(parent.pid))  # the last --watch-pid wins
    with Client(server.endpoint) as c:
        c.send(Submit(job="long", kind="sleep", params={"steps": 100_000, "seconds": 0.01}))
        assert c.recv(5) == Accepted(job="long", position=0)
    time.sleep(1.5)
    assert server.process.poll() is None, "it keeps serving while the watched process lives"
    parent.kill()
    parent.wait()
    assert not process_alive(parent.pid) and process_alive(os.getpid())
    assert server.process.wait(20) == 0, server.stderr()
    assert f"the watched process {parent.pid} is gone" in server.log_path.read_text()
