"""Forward + backward cost of the PyTorch rasterizer, against a CLIP step and against DEODR, in one run.

    python benchmarks/render_bench.py [--device cpu] [--repeats 3] [--report FILE] [--quick]

Rows: a batch of 5 views at 224 and 512 px of bumpy spheres with ~1k, ~10k and ~100k faces, shaded with
per-vertex colours and antialiased, loss = random-weighted sum of pixels, backward to vertex positions and colours.
Beside it: one ViT-B-32 CLIP image-tower forward + backward (random weights: timing only) on the same
5 views at 224 px, and DEODR (a C renderer with a PyTorch interface) on the same mesh, size and view.
Targets (issue 21, CPU, same run, same thread count): renderer <= 1/4 of the CLIP step at 224 px / 10k faces;
at most DEODR's time at 512 px / ~80k faces and within 1.5x of it at 224 px / 10k faces. The header says which
CPU path ran (the compiled kernel, or pure PyTorch where it cannot be built or ATELIER_RASTER_KERNEL=pure).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from backend.render.camera import fit_distance, orbit_cameras
from backend.render.rasterizer import RasterizerConfig, make_rasterizer
from backend.render.renderer import MeshRenderer, RenderConfig

VIEWS = 5
FOV = 40.0


def bumpy_sphere(rings: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A UV sphere of ~2 * rings^2 faces with seeded bumps (self-occlusion), radius ~1."""
    import trimesh

    mesh = trimesh.creation.uv_sphere(radius=1.0, count=[rings, rings])
    rng = np.random.default_rng(seed)
    v = mesh.vertices
    bumps = np.zeros(len(v))
    for _ in range(6):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        bumps += 0.08 * np.sin(rng.uniform(3, 9) * (v @ direction) + rng.uniform(0, 2 * math.pi))
    v = v * (1.0 + bumps)[:, None]
    return (v / np.linalg.norm(v, axis=1).max()).astype(np.float32), mesh.faces.astype(np.int32)


def timed_together(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each function, called in turn `repeats` times after one warm-up each.

    Interleaving keeps the ratios honest on a shared machine: a slow spell hits every contender.
    """
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def atelier_step(vertices: np.ndarray, faces: np.ndarray, size: int, views: int, device: str,
                 implementation: str = "torch"):
    renderer = MeshRenderer(RenderConfig(size=size, rasterizer=RasterizerConfig(implementation=implementation)),
                            device)
    cams = orbit_cameras(torch.arange(views) * (360.0 / views) + 15.0, torch.full((views,), 20.0),
                         fit_distance(FOV), FOV, device=device)
    v = torch.tensor(vertices, device=device, requires_grad=True)
    colors = torch.full((len(vertices), 3), 0.6, device=device, requires_grad=True)
    f = torch.tensor(faces, device=device)

    weight = torch.rand(views, size, size, 3, device=device)

    def step():
        out = renderer.render(v, f, cams, vertex_colors=colors)
        (out.image * weight).sum().backward()
        if device != "cpu":
            torch.cuda.synchronize()

    return step


def clip_step(views: int, device: str):
    import open_clip

    model = open_clip.create_model("ViT-B-32", pretrained=None).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    images = torch.rand(views, 3, 224, 224, device=device, requires_grad=True)

    def step():
        model.encode_image(images).sum().backward()
        if device != "cpu":
            torch.cuda.synchronize()

    return step


def deodr_step(vertices: np.ndarray, faces: np.ndarray, size: int):
    """DEODR's PyTorch interface on the same mesh and camera (one view: it renders one at a time)."""
    from deodr.pytorch import CameraPytorch, ColoredTriMeshPytorch, Scene3DPytorch

    cams = orbit_cameras(torch.tensor([15.0]), torch.tensor([20.0]), fit_distance(FOV), FOV)
    view = cams.view[0].numpy().astype(np.float64)
    # DEODR's camera looks down +Z with y down (OpenCV); ours looks down -Z with y up.
    extrinsic = np.diag([1.0, -1.0, -1.0]) @ view[:3, :]
    focal = size / (2 * math.tan(math.radians(FOV) / 2))
    intrinsic = np.array([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1]])
    camera = CameraPytorch(extrinsic=extrinsic, intrinsic=intrinsic, width=size, height=size)
    mesh = ColoredTriMeshPytorch(faces.astype(np.int32), vertices=vertices.astype(np.float64),
                                 colors=np.full((len(vertices), 3), 0.6))
    scene = Scene3DPytorch()
    scene.set_mesh(mesh)
    scene.set_background_color(np.ones(3))
    scene.set_light(light_directional=torch.tensor([-0.5, 0.0, -0.5], dtype=torch.float64), light_ambient=0.5)
    v = torch.tensor(vertices, dtype=torch.float64, requires_grad=True)
    colors = torch.full((len(vertices), 3), 0.6, dtype=torch.float64, requires_grad=True)

    weight = torch.rand(size, size, 3, dtype=torch.float64)  # a dense gradient (DEODR needs it contiguous)

    def step():
        mesh.set_vertices(v)
        mesh.set_vertices_colors(colors)
        image = scene.render(camera)
        (image * weight).sum().backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--report", default=None, help="write the JSON results here")
    parser.add_argument("--quick", action="store_true", help="only 224 px / 10k faces and 512 px / 80k faces")
    args = parser.parse_args()
    torch.manual_seed(0)
    meshes = {"1k": bumpy_sphere(17), "10k": bumpy_sphere(51), "80k": bumpy_sphere(141), "100k": bumpy_sphere(158)}
    try:
        import deodr  # noqa: F401

        have_deodr = True
    except ImportError as exc:  # the `bench` extra installs it
        print(f"DEODR not available ({exc}); install with pip install -e .[bench]")
        have_deodr = False
    clip = clip_step(VIEWS, args.device)
    rows = []
    cases = [(224, "10k"), (512, "80k")] if args.quick else [(s, m) for s in (224, 512) for m in ("1k", "10k", "80k", "100k")]
    for size, name in cases:
        vertices, faces = meshes[name]
        contenders = {"ours5": atelier_step(vertices, faces, size, VIEWS, args.device),
                      "ours1": atelier_step(vertices, faces, size, 1, args.device)}
        if size == 224:
            contenders["clip"] = clip
        if have_deodr and args.device == "cpu":
            contenders["deodr1"] = deodr_step(vertices, faces, size)
        t = timed_together(contenders, args.repeats)
        rows.append({
            "size": size, "mesh": name, "faces": int(len(faces)),
            "atelier_5_views_s": t["ours5"], "atelier_1_view_s": t["ours1"],
            "clip_vit_b32_5_views_s": t.get("clip"),
            "renderer_over_clip": t["ours5"] / t["clip"] if "clip" in t else None,
            "deodr_1_view_s": t.get("deodr1"),
            "atelier_over_deodr": t["ours1"] / t["deodr1"] if "deodr1" in t else None,
        })
    header = (f"{'size':>5} {'faces':>7} {'atelier 5v s':>13} {'atelier 1v s':>13} {'CLIP 5v s':>10} {'/ CLIP':>7} "
              f"{'DEODR 1v s':>11} {'/ DEODR':>8}")
    kernel_path = getattr(make_rasterizer(RasterizerConfig(implementation="torch"), args.device), "kernel_path", "-")
    print(f"device {args.device}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, rasterizer path {kernel_path}; "
          f"CLIP = ViT-B-32 image tower fwd+bwd on {VIEWS} views at 224 px")
    print(header)
    for r in rows:
        fmt = lambda x, spec: format(x, spec) if x is not None else "-"  # noqa: E731
        print(f"{r['size']:>5} {r['faces']:>7} {r['atelier_5_views_s']:>13.4f} {r['atelier_1_view_s']:>13.4f} "
              f"{fmt(r['clip_vit_b32_5_views_s'], '>10.3f'):>10} {fmt(r['renderer_over_clip'], '>7.3f'):>7} {fmt(r['deodr_1_view_s'], '>11.4f'):>11} "
              f"{fmt(r['atelier_over_deodr'], '>8.2f'):>8}")
    result = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "rasterizer_path": kernel_path,
              "repeats": args.repeats, "rows": rows}
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
