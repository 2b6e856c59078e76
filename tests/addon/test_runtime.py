"""The add-on's backend session without Blender's UI: start-up failures, unreachable and remote backends.

A real backend process (the backend environment's python) where one is needed; the add-on side runs
here, with no torch.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest
import zmq.auth

from blender_addon.core.errors import AddonError
from blender_addon.engine.runtime import BackendSettings, Runtime
from blender_addon.engine.supervisor import BackendProcess


def poll_until(runtime: Runtime, predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runtime.poll()
        if predicate():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out: backend {runtime.state} {runtime.message}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_missing_python_fails_at_once_with_the_fix(tmp_path):
    runtime = Runtime(BackendSettings(python=str(tmp_path / "no" / "python"), log_dir=tmp_path))
    with pytest.raises(AddonError, match="does not exist") as info:
        runtime.start()
    assert "Preferences" in info.value.hint
    assert runtime.state == "failed" and "does not exist" in runtime.message


def test_python_without_the_backend_fails_with_its_stderr_and_log(tmp_path):
    # This environment's python has no backend package: the add-on pointed at the wrong environment.
    runtime = Runtime(BackendSettings(python=sys.executable, log_dir=tmp_path, start_timeout=30))
    record = runtime.submit("render", {"views": 1, "size": 16}, label="Render")
    assert record.state == "waiting" and runtime.state == "starting"
    poll_until(runtime, lambda: runtime.state == "failed", 30)
    assert record.state == "failed" and record.code == "backend_unavailable"
    assert "before it was ready" in record.message and "No module named" in record.message
    assert str(tmp_path) in record.error_text()  # the log is named
    runtime.shutdown()


def test_an_address_that_does_not_answer_fails_the_job_without_blocking(tmp_path):
    runtime = Runtime(BackendSettings(mode="remote", remote_address=f"tcp://127.0.0.1:{free_port()}",
                                      connect_timeout=0.5, log_dir=tmp_path))
    started = time.monotonic()
    record = runtime.submit("render", {"views": 1, "size": 16}, label="Render")
    assert time.monotonic() - started < 0.5 and runtime.state == "connecting"
    poll_until(runtime, lambda: not record.active, 5)
    assert record.state == "failed" and "no answer from tcp://127.0.0.1:" in record.message
    assert runtime.state == "failed"
    runtime.shutdown()


@pytest.mark.parametrize("address, match", [("", "no remote backend address"), ("gpu-box:5557", "no transport")])
def test_bad_remote_addresses_are_refused(tmp_path, address, match):
    runtime = Runtime(BackendSettings(mode="remote", remote_address=address, log_dir=tmp_path))
    with pytest.raises(AddonError, match=match):
        runtime.start()


def _keys(folder: Path) -> tuple[Path, Path]:
    """The layout `atelier keys DIR` writes, and a client folder holding what Blender's machine gets."""
    server_dir, client_dir = folder / "server", folder / "client"
    (server_dir / "authorized_clients").mkdir(parents=True)
    client_dir.mkdir()
    for name in ("server", "client"):
        zmq.auth.create_certificates(server_dir, name)
    shutil.copy(server_dir / "client.key", server_dir / "authorized_clients" / "client.key")
    shutil.copy(server_dir / "client.key_secret", client_dir)
    shutil.copy(server_dir / "server.key", client_dir)
    return server_dir, client_dir


def _wait_ready(runtime: Runtime, timeout: float = 90) -> None:
    poll_until(runtime, lambda: runtime.state not in ("starting", "connecting"), timeout)
    assert runtime.ready, f"{runtime.message} ({runtime.hint})"


def test_a_dead_local_backend_restarts_once_and_again_after_a_healthy_run(backend_py, tmp_path):
    runtime = Runtime(BackendSettings(python=str(backend_py), device="cpu", log_dir=tmp_path, start_timeout=90,
                                      restart_delay=0.5, healthy_after=2.0))
    runtime.start()
    _wait_ready(runtime)
    first = runtime.process.pid
    runtime.process.process.kill()
    poll_until(runtime, lambda: runtime.restart_pending, 5)
    assert runtime.state == "lost" and "exit code -9" in runtime.message and "restarting it" in runtime.restart_note
    poll_until(runtime, lambda: runtime.ready and runtime.process.pid != first, 90)  # polling alone restarts it
    assert runtime.restarts == 1 and "restarted at" in runtime.restart_note

    # Ready for longer than healthy_after: the budget is back, the next death is restarted too.
    deadline = time.monotonic() + 2.3
    while time.monotonic() < deadline:
        runtime.poll()
        time.sleep(0.05)
    second = runtime.process.pid
    runtime.process.process.kill()
    poll_until(runtime, lambda: runtime.ready and runtime.process.pid != second, 90)
    assert runtime.restarts == 2

    # Dying again at once: left lost with the log named, not restarted in a loop.
    runtime.process.process.kill()
    poll_until(runtime, lambda: runtime.state == "lost", 5)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        runtime.poll()
        assert runtime.state == "lost" and not runtime.restart_pending
        time.sleep(0.05)
    assert runtime.restarts == 2 and "not restarting it" in runtime.restart_note
    assert str(tmp_path) in runtime.restart_note and "Start" in runtime.hint

    # The artist's Start is a fresh budget.
    runtime.start()
    assert runtime.restart_note == "" and runtime.state == "starting"
    runtime.shutdown()


def test_an_idle_remote_backend_that_dies_shows_within_5_s(backend_py, tmp_path):
    server_dir, client_dir = _keys(tmp_path)
    process = BackendProcess(str(backend_py), log_path=tmp_path / "remote.log", device="cpu",
                             extra_args=("--curve-dir", str(server_dir)), start_timeout=90)
    process.launch()
    try:
        deadline = time.monotonic() + 90
        while (outcome := process.poll()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outcome is not None and outcome.ok, outcome and outcome.message
        runtime = Runtime(BackendSettings(mode="remote", remote_address=outcome.endpoint, curve_dir=str(client_dir),
                                          connect_timeout=5.0, log_dir=tmp_path))
        runtime.start()
        _wait_ready(runtime, 10)
        # Idle (no job) for several ping rounds: a live backend answers, so it stays ready.
        deadline = time.monotonic() + 3 * runtime.settings.idle_ping_timeout
        while time.monotonic() < deadline:
            runtime.poll()
            assert runtime.ready, runtime.message
            time.sleep(0.05)
        assert runtime.status is not None  # the pings' replies
        process.kill()
        killed = time.monotonic()
        poll_until(runtime, lambda: runtime.state != "ready", 10)
        seconds = time.monotonic() - killed
        print(f"idle remote backend's death shown after {seconds:.2f} s")
        assert runtime.state == "lost" and "stopped answering" in runtime.message and seconds < 5.0
        assert not runtime.restart_pending  # a remote backend is never restarted from here
        runtime.shutdown()
    finally:
        process.stop(grace=0.1, wait=True)


def test_remote_backend_over_curvezmq(backend_py, tmp_path):
    server_dir, client_dir = _keys(tmp_path)
    process = BackendProcess(str(backend_py), log_path=tmp_path / "remote.log", device="cpu",
                             extra_args=("--curve-dir", str(server_dir)), start_timeout=90)
    process.launch()
    try:
        deadline = time.monotonic() + 90
        while (outcome := process.poll()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outcome is not None and outcome.ok, outcome and outcome.message
        runtime = Runtime(BackendSettings(mode="remote", remote_address=outcome.endpoint, curve_dir=str(client_dir),
                                          connect_timeout=5.0, log_dir=tmp_path))
        runtime.start()
        poll_until(runtime, lambda: runtime.state != "connecting", 10)
        assert runtime.state == "ready", runtime.message
        assert runtime.log_path == str(tmp_path / "remote.log")  # the remote backend names its log
        runtime.stop()  # a remote backend is only disconnected, never shut down
        assert process.exit_code() is None

        # A key pair the backend does not know gets no answer at all.
        stranger = tmp_path / "stranger"
        stranger.mkdir()
        zmq.auth.create_certificates(stranger, "client")
        shutil.copy(server_dir / "server.key", stranger)
        refused = Runtime(BackendSettings(mode="remote", remote_address=outcome.endpoint, curve_dir=str(stranger),
                                          connect_timeout=0.5, log_dir=tmp_path))
        refused.start()
        poll_until(refused, lambda: refused.state != "connecting", 5)
        assert refused.state == "failed" and "CurveZMQ" in refused.message
    finally:
        process.stop(grace=0.1, wait=True)
