"""CurveZMQ on the client side, for a remote backend. No bpy; zmq only (not `backend.server.curve`).

`atelier keys DIR` writes the key pairs; copy `client.key_secret` and `server.key` from DIR into a folder
on the Blender machine and name that folder in the preferences. The secret stays on this machine; the
backend admits only public keys in its `authorized_clients/`.
"""

from __future__ import annotations

from pathlib import Path

import zmq
import zmq.auth

from ..core.errors import AddonError

CLIENT_SECRET = "client.key_secret"
SERVER_PUBLIC = "server.key"
_HINT = ("make keys on the backend machine with `atelier keys DIR`, copy DIR/client.key_secret and "
         "DIR/server.key into this folder, and start the backend with --curve-dir DIR")


def load_client_keys(directory: str | Path) -> tuple[bytes, bytes, bytes]:
    """(client public, client secret, server public) Z85 keys from `directory`; AddonError naming the file."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise AddonError(f"the CurveZMQ key folder {directory} does not exist", _HINT, code="keys_missing")
    keys = []
    for name, secret in ((CLIENT_SECRET, True), (SERVER_PUBLIC, False)):
        path = directory / name
        if not path.is_file():
            raise AddonError(f"the CurveZMQ key file {path} is missing", _HINT, code="keys_missing")
        try:
            public, secret_key = zmq.auth.load_certificate(path)
        except (ValueError, OSError) as exc:
            raise AddonError(f"{path} is not a CurveZMQ key file ({exc})", _HINT, code="keys_invalid") from exc
        if secret and secret_key is None:
            raise AddonError(f"{path} holds no secret key", _HINT, code="keys_invalid")
        keys.append((public, secret_key))
    (client_public, client_secret), (server_public, _) = keys
    return client_public, client_secret, server_public


def secure_client_socket(socket: zmq.Socket, directory: str | Path) -> None:
    """Makes `socket` a CURVE client with the keys in `directory` (call before connect)."""
    client_public, client_secret, server_public = load_client_keys(directory)
    socket.curve_secretkey = client_secret
    socket.curve_publickey = client_public
    socket.curve_serverkey = server_public
