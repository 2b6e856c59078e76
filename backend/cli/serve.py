"""`atelier doctor`, `serve` and `keys`: the backend's environment, the server, and its CurveZMQ keys."""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

from backend.cli.common import Report, command, resolve


# ----------------------------------------------------------------------------------------- doctor
@command("doctor", "what is installed, which device and renderer would run, which weights are present")
def _doctor_args(parser: argparse.ArgumentParser) -> None:
    pass


@_doctor_args.run
def _doctor(args, report: Report) -> None:
    import torch

    from backend import external
    from backend.cli.models import shipped_rows, weights_table
    from backend.models import list_models

    device = resolve(args, report)
    facts = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "nvdiffrast": external.HAS_NVDIFFRAST,
    }
    for package in ("open_clip", "trimesh", "zmq", "faiss"):
        try:
            module = __import__(package)
            facts[package] = getattr(module, "__version__", "installed")
        except ImportError:
            facts[package] = None
    models = list_models()
    shipped = shipped_rows()
    report.update(facts)
    report["models"] = models
    report["shipped"] = shipped
    width = max(len(k) for k in facts)
    for key, value in {**facts, "device": str(device), "renderer": report["renderer"]}.items():
        print(f"{key:<{width}}  {value}")
    print("weights:")
    for line in weights_table(shipped + models, indent="  "):
        print(line)


# ------------------------------------------------------------------------------------------ serve
@command("serve", "run the backend server")
def _serve_args(parser: argparse.ArgumentParser) -> None:
    from backend.server.config import ServerConfig

    defaults = ServerConfig()
    parser.add_argument("--bind", default=defaults.bind,
                        help="ZeroMQ endpoint; tcp://127.0.0.1:* picks a free port (announced on the ready line)")
    parser.add_argument("--curve-dir", default=None,
                        help="folder made by `atelier keys`: encrypt, and serve only its authorised client keys")
    parser.add_argument("--max-client-bytes", type=int, default=defaults.max_client_bytes,
                        help="bytes of submitted data one client's queued and running jobs may hold")
    parser.add_argument("--max-total-bytes", type=int, default=defaults.max_total_bytes,
                        help="bytes of submitted data all clients' jobs may hold together")
    parser.add_argument("--data-root", action="append", default=[], metavar="DIR",
                        help="a folder job paths (databases, libraries, checkpoints) may lie in; repeatable. Without "
                             "it a local backend takes any path and a --curve-dir (remote) one none")
    parser.add_argument("--log", default=None, help="log file (default: a file under the temp dir)")
    parser.add_argument("--log-level", default=defaults.log_level, help="DEBUG | INFO | WARNING | ERROR")
    parser.add_argument("--max-blob-bytes", type=int, default=defaults.max_blob_bytes, help="largest blob frame accepted")
    parser.add_argument("--max-queue", type=int, default=defaults.max_queue, help="jobs waiting before submit is refused")
    parser.add_argument("--blender", default=None, metavar="PATH",
                        help="the Blender index jobs read .blend, FBX, USD and Alembic files with (default: "
                             "$ATELIER_BLENDER, .venv-blender, `blender` on PATH)")
    parser.add_argument("--ray", default=None, metavar="ADDRESS",
                        help="index jobs shard loose meshes over this Ray cluster: auto or HOST:PORT (default: none)")
    parser.add_argument("--test-jobs", action="store_true", help="also offer the echo, sleep and fail job kinds")
    parser.add_argument("--watch-pid", type=int, default=None,
                        help="stop when this process is gone (the add-on passes Blender's pid)")


@_serve_args.run
def _serve(args, report: Report) -> None:
    from backend.server.app import serve
    from backend.server.config import ServerConfig

    config = ServerConfig(bind=args.bind, device=args.device, curve_dir=args.curve_dir, log_path=args.log,
                          data_roots=tuple(args.data_root), max_client_bytes=args.max_client_bytes,
                          max_total_bytes=args.max_total_bytes,
                          log_level=args.log_level, max_blob_bytes=args.max_blob_bytes, max_queue=args.max_queue,
                          test_jobs=args.test_jobs, watch_pid=args.watch_pid, blender=args.blender,
                          ray=args.ray)
    report["exit_code"] = serve(config)


# ------------------------------------------------------------------------------------------- keys
@command("keys", "make CurveZMQ server and client key pairs for a remote backend")
def _keys_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="folder to write the keys into")


@_keys_args.run
def _keys(args, report: Report) -> None:
    from backend.server.curve import make_keys

    paths = make_keys(Path(args.dir))
    report["keys"] = {k: str(v) for k, v in paths.items()}
    for key, path in paths.items():
        print(f"{key:<16} {path}")
