"""The first stage of `python build.py demo` (`python -m tools.render_demo --out DIR`): render jobs through a
real backend process.

Starts `atelier serve` on a free loopback port, shakes hands, submits procedural meshes as the Blender add-on
would (Blender's frame, per-corner UVs, PNG texture), streams progress, and writes the rendered views and a
contact sheet to the output folder. A tool, not the product: it may use the procedural world (`backend.world`).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from backend.geometry.mesh import Mesh
from backend.geometry.primitives import textured_cube
from backend.server.client import Client
from backend.server.launch import start_backend, stop_backend
from backend.server.meshes import payload_from_mesh
from backend.world.shape import make_shape
from shared_protocol import Error, Hello, Progress, Result, Submit, Welcome


def demo_meshes() -> dict[str, Mesh]:
    """A few meshes with different appearance paths: UV texture, procedural families."""
    return {
        "textured_cube": textured_cube(),
        "chair": make_shape(7, "chair").mesh,
        "lamp": make_shape(3, "lamp").mesh,
        "mug": make_shape(11, "mug").mesh,
    }


def render_through_backend(client: Client, name: str, mesh: Mesh, views: int, size: int) -> tuple[list[np.ndarray], dict]:
    """Submits one `render` job and returns its images and figures."""
    job = f"{name}-{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    client.send(Submit(job=job, kind="render", params={"views": views, "size": size},
                       mesh=payload_from_mesh(mesh, corner_uv=True)))
    progress_messages = 0
    for msg in client.job_messages(job, timeout=600):
        if isinstance(msg, Progress):
            progress_messages += 1
            print(f"  {name}: {msg.stage} {msg.step}/{msg.total}", flush=True)
        elif isinstance(msg, Error):
            raise RuntimeError(f"{name}: {msg.code}: {msg.message} ({msg.hint})")
        elif isinstance(msg, Result):
            images = [np.asarray(Image.open(io.BytesIO(msg.blobs[n]))) for n in msg.fields["names"]]
            return images, {"seconds": round(time.perf_counter() - start, 3), "progress_messages": progress_messages,
                            "faces": mesh.num_faces, "views": len(images)}
    raise RuntimeError(f"{name}: the job ended without a result")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo_out", help="output folder")
    parser.add_argument("--views", type=int, default=6)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"starting the backend (log in {out / 'backend'})", flush=True)
    backend = start_backend(out / "backend", device=args.device)
    summary: dict = {"endpoint": backend.endpoint, "jobs": {}}
    try:
        with Client(backend.endpoint) as client:
            welcome = client.request(Hello(client="atelier-demo"), timeout=30)
            if not isinstance(welcome, Welcome):
                raise RuntimeError(f"handshake failed: {welcome}")
            print(f"connected to {backend.endpoint}: device {welcome.device}, renderer {welcome.renderer}", flush=True)
            summary.update(device=welcome.device, renderer=welcome.renderer)
            rows = []
            for name, mesh in demo_meshes().items():
                images, figures = render_through_backend(client, name, mesh, args.views, args.size)
                for i, image in enumerate(images):
                    Image.fromarray(image).save(out / f"{name}_view_{i:02d}.png")
                rows.append(np.concatenate(images, axis=1))
                summary["jobs"][name] = figures
            Image.fromarray(np.concatenate(rows, axis=0)).save(out / "contact_sheet.png")
    finally:
        code = stop_backend(backend)
    summary["backend_exit_code"] = code
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out / 'contact_sheet.png'} and {sum(j['views'] for j in summary['jobs'].values())} views; "
          f"backend exited with {code}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
