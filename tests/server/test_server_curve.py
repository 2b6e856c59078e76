"""CurveZMQ: a server with --curve-dir serves only the client keys in authorized_clients/."""

from __future__ import annotations

import stat

import pytest
import zmq
from server_helpers import start_server

from backend.errors import AtelierError
from backend.server.client import Client
from backend.server.curve import make_keys
from shared_protocol import Hello, Shutdown, Welcome

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not zmq.has("curve"), reason="libzmq was built without CURVE")]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    make_keys(directory)
    return directory


@pytest.fixture(scope="module")
def curve_server(tmp_path_factory, keys):
    running = start_server(tmp_path_factory.mktemp("curve-backend"), "--curve-dir", str(keys))
    yield running
    with Client(running.endpoint, curve_dir=keys) as c:  # only an authorized client can shut it down
        assert c.request(Shutdown(), timeout=10) == Shutdown()
    assert running.process.wait(15) == 0, running.stderr()


def test_make_keys_layout_and_permissions(keys):
    for name in ("server.key", "server.key_secret", "client.key", "client.key_secret", "authorized_clients/client.key"):
        assert (keys / name).is_file(), name
    assert stat.S_IMODE((keys / "server.key_secret").stat().st_mode) == 0o600
    assert (keys / "authorized_clients/client.key").read_text() == (keys / "client.key").read_text()
    with pytest.raises(AtelierError, match="keys already exist"):
        make_keys(keys)


def test_the_authorized_key_is_welcomed(curve_server, keys):
    with Client(curve_server.endpoint, curve_dir=keys) as c:
        assert isinstance(c.request(Hello(client="remote"), timeout=10), Welcome)


def test_an_unknown_key_gets_nothing(curve_server, keys, tmp_path):
    make_keys(tmp_path)  # a valid key pair the server never authorized...
    (tmp_path / "server.key").write_text((keys / "server.key").read_text())  # ...aimed at the right server
    with Client(curve_server.endpoint, curve_dir=tmp_path) as stranger:
        stranger.send(Hello(client="stranger"))
        assert stranger.recv(1.5) is None


def test_a_plain_client_gets_nothing(curve_server):
    with Client(curve_server.endpoint) as plain:
        plain.send(Hello(client="no curve"))
        assert plain.recv(1.0) is None


def test_missing_keys_say_how_to_make_them(tmp_path):
    with pytest.raises(AtelierError, match="missing") as info:
        Client("tcp://127.0.0.1:1", curve_dir=tmp_path)
    assert "atelier keys" in info.value.hint
