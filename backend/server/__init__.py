"""The backend server (DESIGN §3): ROUTER socket, handshake, job queue, worker, progress, cancel, CURVE.

    from backend.server import ServerConfig, serve
    serve(ServerConfig(bind="tcp://127.0.0.1:5557", device="auto"))

`ServerConfig` and `Client` import without torch; `serve` imports the compute stack when called.
"""

from backend.server.config import ServerConfig


def serve(config: ServerConfig, ready=None) -> int:
    """Runs the backend until shutdown/SIGINT/SIGTERM; see `backend.server.app.serve`."""
    # Imported here so `import backend.server` (config, client, keys) stays free of torch.
    from backend.server.app import serve as _serve

    return _serve(config, ready)


__all__ = ["ServerConfig", "serve"]
