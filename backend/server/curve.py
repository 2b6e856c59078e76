"""CurveZMQ for remote backends: key pairs on disk, an allow-list of client keys, socket set-up.

Layout written by `make_keys(dir)` (`atelier keys DIR`):
    server.key, server.key_secret      the server's pair (the secret stays on the GPU box)
    client.key, client.key_secret      a client pair (copy client.key_secret and server.key to Blender)
    authorized_clients/client.key      public keys allowed to connect; add more .key files to admit more
A server started with `curve_dir` encrypts everything and serves only keys in `authorized_clients/`;
an unknown key's handshake is refused, so it gets no reply at all.

This module imports only zmq (not torch), so clients can use it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from backend.errors import AtelierError

AUTHORIZED_DIR = "authorized_clients"
_KEYS_HINT = "make keys with `atelier keys DIR` and pass the same DIR (--curve-dir)"


def make_keys(directory: Path | str, overwrite: bool = False) -> dict[str, Path]:
    """Writes server and client key pairs plus `authorized_clients/client.key`; returns their paths.

    Refuses to replace existing keys unless `overwrite` (replacing them locks out every client).
    Secret key files are made readable by the owner only.
    """
    directory = Path(directory)
    if (directory / "server.key_secret").exists() and not overwrite:
        raise AtelierError(f"keys already exist in {directory}",
                           hint="use another folder, or overwrite=True (--force) to replace them and re-copy "
                                "the client keys", code="keys_exist")
    authorized = directory / AUTHORIZED_DIR
    authorized.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in ("server", "client"):
        public, secret = zmq.auth.create_certificates(directory, name)
        os.chmod(secret, 0o600)
        paths[f"{name}_public"], paths[f"{name}_secret"] = Path(public), Path(secret)
    paths["authorized_client"] = Path(shutil.copyfile(paths["client_public"], authorized / "client.key"))
    return paths


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    if not path.exists():
        raise AtelierError(f"the CurveZMQ key file {path} is missing", hint=_KEYS_HINT, code="keys_missing")
    public, secret_key = zmq.auth.load_certificate(path)
    if secret and secret_key is None:
        raise AtelierError(f"{path} holds no secret key", hint=_KEYS_HINT, code="keys_missing")
    return public, secret_key


def start_authenticator(context: zmq.Context, directory: Path | str) -> ThreadAuthenticator:
    """Starts the ZAP handler that admits only the public keys in `directory/authorized_clients/`."""
    authorized = Path(directory) / AUTHORIZED_DIR
    if not authorized.is_dir() or not any(authorized.glob("*.key")):
        raise AtelierError(f"no authorized client keys in {authorized}", hint=_KEYS_HINT, code="keys_missing")
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location=str(authorized))
    return auth


def secure_server_socket(socket: zmq.Socket, directory: Path | str) -> None:
    """Makes `socket` a CURVE server with the key pair in `directory` (call before bind)."""
    public, secret = _load(Path(directory) / "server.key_secret", secret=True)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True


def secure_client_socket(socket: zmq.Socket, directory: Path | str) -> None:
    """Makes `socket` a CURVE client: its pair from `client.key_secret`, the server's from `server.key`
    (call before connect)."""
    directory = Path(directory)
    client_public, client_secret = _load(directory / "client.key_secret", secret=True)
    server_public, _ = _load(directory / "server.key", secret=False)
    socket.curve_secretkey = client_secret
    socket.curve_publickey = client_public
    socket.curve_serverkey = server_public
