"""The Server class in-process (a thread runs its loop): hooks, and a bug in a reply not stopping the loop."""

from __future__ import annotations

import threading

import pytest

from backend.server import hooks
from backend.server.app import Server
from backend.server.client import Client
from backend.server.config import ServerConfig
from backend.server.handlers import diagnostic
from shared_protocol import Error, Hello, Release, Status, Welcome

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def running(tmp_path, monkeypatch):
    monkeypatch.setattr(hooks, "RELEASE_HOOKS", {})
    monkeypatch.setattr(hooks, "MODEL_LISTERS", {})
    server = Server(ServerConfig(bind="tcp://127.0.0.1:*", device="cpu", log_path=tmp_path / "s.log"),
                    handlers={"echo": diagnostic.echo})
    endpoint = server.start()
    thread = threading.Thread(target=server.run)
    thread.start()
    with Client(endpoint) as client:
        yield server, client
    server.stop()
    thread.join(10)
    server.close()
    assert not thread.is_alive()


def test_release_runs_the_registered_hooks(running, caplog):
    server, client = running
    calls = []
    hooks.register_release_hook("cache", lambda: calls.append("cache"))
    hooks.register_release_hook("broken", lambda: 1 / 0)  # logged, the others still run
    assert client.request(Release()) == Release()
    assert calls == ["cache"]
    assert "release hook 'broken' failed" in caplog.text
    with pytest.raises(ValueError, match="registered twice"):
        hooks.register_release_hook("cache", lambda: None)


def test_welcome_lists_models_and_survives_a_broken_lister(running):
    _, client = running
    hooks.register_models_lister("clip", lambda: ["ViT-B-32:openai", "RN50:openai"])
    hooks.register_models_lister("broken", lambda: 1 / 0)
    welcome = client.request(Hello())
    assert isinstance(welcome, Welcome) and welcome.models == ["RN50:openai", "ViT-B-32:openai"]
    assert welcome.job_kinds == ["echo"]


def test_a_bug_while_answering_is_an_internal_error_and_the_loop_goes_on(running):
    _, client = running
    hooks.register_models_lister("bad", lambda: ["x" * 10_000])  # too long for the protocol
    reply = client.request(Hello())
    assert isinstance(reply, Error) and reply.code == "internal" and "'hello'" in reply.message
    assert isinstance(client.request(Status()), Status)
