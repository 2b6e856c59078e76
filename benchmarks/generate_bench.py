"""The shipped generator (CLIP-Forge + grid decoder, domain CLIP) measured on held-out world shapes and prompts.

    python benchmarks/generate_bench.py [--checkpoint backend/models/weights/generator_domain.pt] [--heldout 64]
        [--samples 8] [--metric-shapes 48] [--points 1024] [--refine-steps 20] [--threads 2]
        [--report benchmarks/results/generate_bench.json]

The generator's library is the domain CLIP's training shapes (`backend.generate.world_train`); held-out shapes are
the domain CLIP's held-out plan (`heldout_plan`), which neither model saw. A shape's category is that of its
nearest library shape by voxel IoU at 32^3 (the classifier is the library, not a learnt model).

(a) Image-conditioned: each held-out shape's rendered view (seeded) conditions the flow; voxel IoU at 32^3 to the
    true shape for the flow's mode (T=0) and a sample (T=0.8), beside: retrieval (the library shape whose view
    embeddings are nearest the condition), an unconditional sample (the mean training condition), a random library
    shape, and the autoencoder's reconstruction of the held-out voxels (the decoder's ceiling).
(b) Prompts: `--samples` shapes (T=0.8) per category for "a photo of a <c>" (a form the flow trained on) and
    "a picture of a <c>" (a form it never saw), and one per held-out shape for its world caption (sentences it
    never saw): category accuracy overall and per category.
(c) Generative metrics (PointFlow): MMD-CD, COV-CD and 1-NNA-CD of `--metric-shapes` generated shapes (one per
    held-out shape, conditioned on its view, decoded at 64^3 with clean-up) against those held-out shapes, beside
    the retrieval and unconditional baselines (`--points` surface samples per shape).
(d) Refinement: one sample per category prompt refined `--refine-steps` steps; the prompt's CLIP score on held-out
    cameras (never rendered while refining) and category accuracy, before and after.
(e) Surfaces: every mesh decoded in (b) and (c): floating pieces above 1% of the volume, watertight and
    consistently wound (trimesh), a GLB that reads back; and what the clean-up did: meshes with a piece bridged
    back, and with detached volume dropped (over 1% and 5% of the volume: the cost of "one object").
Timing: seconds per shape at 64^3 and 128^3, coarse to fine against dense.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from backend.errors import InvalidInputError
from backend.generate.cleanup import floating_fractions
from backend.generate.decode import DecodeConfig, decode_grid, decode_grid_coarse_to_fine, decode_latent, logits_to_mesh
from backend.generate.generate import prompt_condition
from backend.generate.generator import load_generator
from backend.generate.library import read_library, view_embeddings
from backend.generate.metrics import generative_metrics, surface_points
from backend.generate.occupancy import voxel_iou
from backend.generate.refine import RefineConfig, refine_latent
from backend.generate.shipped import SHIPPED_GENERATOR
from backend.generate.world_train import world_library_plan, write_world_library
from backend.geometry.glb import export_glb, read_glb
from backend.geometry.normalize import normalize_to_unit_sphere
from backend.geometry.voxelize import voxelize
from backend.models.clip import load_clip
from backend.models.domain_world import heldout_plan
from backend.world.shape import make_shape

TRAINED_FORM, UNSEEN_FORM = "a photo of a {}", "a picture of a {}"


def mean(values) -> float:
    return float(statistics.fmean(values)) if len(values) else float("nan")


class NearestCategory:
    """The category of a voxel grid: its nearest library grid's by IoU (all library grids at once, as a matmul)."""

    def __init__(self, voxels: np.ndarray, categories: list[str]):
        self.grids = torch.from_numpy(voxels.reshape(len(voxels), -1)).float()
        self.sizes = self.grids.sum(1)
        self.categories = categories

    def __call__(self, grid: np.ndarray) -> str:
        x = torch.from_numpy(np.asarray(grid, dtype=bool).reshape(-1)).float()
        inter = self.grids @ x
        return self.categories[int(torch.argmax(inter / (self.sizes + x.sum() - inter)))]


def occupied(ae, latent: torch.Tensor) -> np.ndarray:
    return decode_grid(ae, latent, 32) > 0.0


def decoded(ae, latent: torch.Tensor, config: DecodeConfig):
    """The latent's mesh, or None when its surface is empty (counted as a failed shape, never skipped)."""
    try:
        return decode_latent(ae, latent, config)
    except InvalidInputError:
        return None


def cloud(mesh, count: int, rng: np.random.Generator) -> np.ndarray:
    """Surface samples; an empty shape is all points at the origin (as far from every real shape as it deserves)."""
    return surface_points(mesh, count, rng) if mesh is not None else np.zeros((count, 3), np.float32)


def surface_check(mesh) -> dict:
    """Floating pieces, watertightness and a GLB round trip of one generated mesh (None: an empty surface)."""
    import trimesh

    if mesh is None:
        return {"empty": True, "largest_floating": 0.0, "watertight": False, "winding": False, "glb": False,
                "volume_removed": 0.0, "bridged": 0}
    tri = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    document, _ = read_glb(export_glb(mesh))
    floating = floating_fractions(mesh)
    cleanup = mesh.metadata["cleanup"]
    return {"empty": False, "largest_floating": max(floating, default=0.0), "watertight": bool(tri.is_watertight),
            "winding": bool(tri.is_winding_consistent), "glb": bool(document.get("meshes")),
            "volume_removed": cleanup["volume_removed"], "bridged": cleanup["bridged"]}


def accuracy_table(names: list[str], got: dict[str, list[bool]]) -> dict:
    return {"overall": mean([h for n in names for h in got[n]]), "per_category": {n: mean(got[n]) for n in names},
            "samples": sum(len(got[n]) for n in names)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(SHIPPED_GENERATOR))
    parser.add_argument("--heldout", type=int, default=64)
    parser.add_argument("--samples", type=int, default=8, help="samples per category prompt in (b)")
    parser.add_argument("--metric-shapes", type=int, default=48)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--refine-steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "atelier" / "world_generator"))
    parser.add_argument("--report", default="benchmarks/results/generate_bench.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    started_all = time.perf_counter()
    generator = load_generator(args.checkpoint, device)
    root = Path(generator.library.get("root", ""))
    if not root.is_dir():  # the library is the world's: write it again where the bench works
        root = write_world_library(Path(args.work) / f"library_{generator.library['shapes']}",
                                   world_library_plan(generator.library["shapes"]))
    library = read_library(root, generator.autoencoder.config.voxel_resolution)
    generator = load_generator(args.checkpoint, device, library_fingerprint=library.fingerprint)
    ae, flow = generator.autoencoder, generator.flow
    clip = load_clip(generator.clip_spec, device)
    categories = [c or "" for c in library.categories]
    names = sorted({c for c in categories if c})
    nearest = NearestCategory(library.voxels, categories)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    report: dict = {"machine": platform.machine(), "threads": args.threads, "device": str(device),
                    "checkpoint": args.checkpoint, "library_shapes": len(library.meshes), "clip": clip.spec,
                    "train": generator.train}
    print(f"library {len(library.meshes)} shapes; embedding its views", flush=True)
    train_views = view_embeddings(library.meshes, clip, 6, device)
    mean_condition = torch.nn.functional.normalize(train_views.reshape(-1, clip.embed_dim).mean(0), dim=0).to(device)
    flat_views = torch.nn.functional.normalize(train_views, dim=-1)

    # --- (a) held-out shapes' views as conditions
    held = heldout_plan(args.heldout)
    held_shapes = [make_shape(seed, category) for seed, category in held]
    held_meshes = [normalize_to_unit_sphere(s.mesh)[0] for s in held_shapes]
    held_voxels = np.stack([voxelize(m, 32) for m in held_meshes])
    held_views = view_embeddings(held_meshes, clip, 6, device)
    conditions = torch.stack([held_views[i, int(rng.integers(6))] for i in range(len(held))]).to(device)
    retrieved = [int((flat_views @ c.cpu()).max(1).values.argmax()) for c in conditions]
    rows = {k: [] for k in ("conditioned, mode (T=0)", "conditioned, sample (T=0.8)", "retrieval (nearest library views)",
                            "unconditional sample (T=0.8)", "random library shape",
                            "autoencoder reconstruction (ceiling)")}
    sample_latents, uncond_latents = [], []
    for i, truth in enumerate(held_voxels):
        mode = flow.sample(conditions[i], 1, gen, temperature=0.0)[0]
        sample = flow.sample(conditions[i], 1, gen, temperature=0.8)[0]
        uncond = flow.sample(mean_condition, 1, gen, temperature=0.8)[0]
        sample_latents.append(sample)
        uncond_latents.append(uncond)
        with torch.no_grad():
            recon = ae.encode(torch.from_numpy(truth[None]).to(device))[0]
        rows["conditioned, mode (T=0)"].append(voxel_iou(occupied(ae, mode), truth))
        rows["conditioned, sample (T=0.8)"].append(voxel_iou(occupied(ae, sample), truth))
        rows["retrieval (nearest library views)"].append(voxel_iou(library.voxels[retrieved[i]], truth))
        rows["unconditional sample (T=0.8)"].append(voxel_iou(occupied(ae, uncond), truth))
        rows["random library shape"].append(voxel_iou(library.voxels[int(rng.integers(len(library.voxels)))], truth))
        rows["autoencoder reconstruction (ceiling)"].append(voxel_iou(occupied(ae, recon), truth))
    report["image_conditioned_iou"] = {k: mean(v) for k, v in rows.items()}
    report["heldout"] = len(held)
    print("(a)", json.dumps({k: round(v, 3) for k, v in report["image_conditioned_iou"].items()}), flush=True)

    # --- (b) prompts
    decode = DecodeConfig()
    checks = []

    def classify(latent: torch.Tensor) -> str:
        checks.append(surface_check(decoded(ae, latent, decode)))
        return nearest(occupied(ae, latent))

    prompts = {}
    for label, form in (("trained form: " + TRAINED_FORM, TRAINED_FORM), ("unseen form: " + UNSEEN_FORM, UNSEEN_FORM)):
        got = {n: [] for n in names}
        for name in names:
            condition = prompt_condition(clip, form.format(name)).to(device)
            got[name] = [classify(z) == name for z in flow.sample(condition, args.samples, gen, temperature=0.8)]
        prompts[label] = accuracy_table(names, got)
    got = {n: [] for n in names}
    uncond = {n: [] for n in names}
    for shape in held_shapes:
        condition = prompt_condition(clip, shape.caption).to(device)
        got[shape.category].append(classify(flow.sample(condition, 1, gen, temperature=0.8)[0]) == shape.category)
        uncond[shape.category].append(nearest(occupied(ae, flow.sample(mean_condition, 1, gen, 0.8)[0]))
                                      == shape.category)
    prompts["held-out captions"] = accuracy_table(names, got)
    prompts["unconditional (same count)"] = accuracy_table(names, uncond)
    prompts["chance"] = 1.0 / len(names)
    report["category_accuracy"] = prompts
    for label, table in prompts.items():
        if isinstance(table, dict):
            print(f"(b) {label}: {table['overall']:.3f} " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                                     table["per_category"].items()), flush=True)

    # --- (c) generative metrics against held-out shapes
    m = min(args.metric_shapes, len(held))
    point_rng = np.random.default_rng(args.seed)
    reference = np.stack([surface_points(mesh, args.points, point_rng) for mesh in held_meshes[:m]])
    sets = {}
    for label, latents in (("generator (view-conditioned, T=0.8)", sample_latents[:m]),
                           ("unconditional (T=0.8)", uncond_latents[:m])):
        meshes = [decoded(ae, z, decode) for z in latents]
        checks.extend(surface_check(mesh) for mesh in meshes)
        sets[label] = np.stack([cloud(mesh, args.points, point_rng) for mesh in meshes])
    sets["retrieval (nearest library shape)"] = np.stack(
        [surface_points(library.meshes[retrieved[i]], args.points, point_rng) for i in range(m)])
    report["generative_metrics"] = {}
    for label, points in sets.items():
        started = time.perf_counter()
        metrics = generative_metrics(points, reference, device=device)
        report["generative_metrics"][label] = metrics
        print(f"(c) {label}: MMD-CD {metrics['mmd']:.5f}, COV {metrics['cov']:.3f}, 1-NNA {metrics['one_nna']:.3f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)

    # --- (d) refinement
    refine_config = RefineConfig(steps=args.refine_steps, seed=args.seed, device=str(device))
    refined = {"before": [], "after": [], "category_before": [], "category_after": [], "seconds_per_step": []}
    for name in names:
        condition = prompt_condition(clip, TRAINED_FORM.format(name)).to(device)
        latent = flow.sample(condition, 1, gen, temperature=0.8)[0]
        try:
            result = refine_latent(ae, latent, condition, clip, refine_config, scale=flow.latent_std)
        except InvalidInputError as exc:  # an empty start: reported, and it counts as not refined
            print(f"(d) {name}: {exc.message}")
            continue
        refined["before"].append(result.score_before)
        refined["after"].append(result.score_after)
        refined["seconds_per_step"].append(result.seconds_per_step)
        refined["category_before"].append(nearest(occupied(ae, latent)) == name)
        refined["category_after"].append(nearest(occupied(ae, result.latent.to(device))) == name)
    report["refinement"] = {
        "steps": args.refine_steps, "prompts": len(names), "refined": len(refined["before"]),
        "clip_score_before": mean(refined["before"]), "clip_score_after": mean(refined["after"]),
        "improved": mean([a > b for a, b in zip(refined["after"], refined["before"])]),
        "lowered": mean([a < b for a, b in zip(refined["after"], refined["before"])]),
        "category_accuracy_before": mean(refined["category_before"]),
        "category_accuracy_after": mean(refined["category_after"]),
        "seconds_per_step": mean(refined["seconds_per_step"])}
    r = report["refinement"]
    print(f"(d) refinement {r['steps']} steps: held-out CLIP score {r['clip_score_before']:.4f} -> "
          f"{r['clip_score_after']:.4f}; category accuracy {r['category_accuracy_before']:.2f} -> "
          f"{r['category_accuracy_after']:.2f}; {r['seconds_per_step']:.3f} s/step", flush=True)

    # --- (e) surfaces
    report["surfaces"] = {
        "meshes": len(checks), "empty": sum(c["empty"] for c in checks), "with_floating_piece_over_1pct": sum(c["largest_floating"] > 0.01 for c in checks),
        "largest_floating": max(c["largest_floating"] for c in checks),
        "not_watertight": sum(not c["watertight"] for c in checks),
        "inconsistent_winding": sum(not c["winding"] for c in checks), "glb_failed": sum(not c["glb"] for c in checks),
        "bridged": sum(c["bridged"] > 0 for c in checks),
        "detached_dropped_over_1pct": sum(c["volume_removed"] > 0.01 for c in checks),
        "detached_dropped_over_5pct": sum(c["volume_removed"] > 0.05 for c in checks),
        "largest_dropped": max(c["volume_removed"] for c in checks)}
    print("(e) surfaces:", json.dumps(report["surfaces"]), flush=True)

    # --- timing: seconds per shape
    timing = {}
    latent = flow.sample(prompt_condition(clip, TRAINED_FORM.format(names[0])).to(device), 1, gen, 0.8)[0]
    try:
        for resolution in (64, 128):
            for coarse in (32, 0):
                config = DecodeConfig(resolution=resolution, coarse_resolution=coarse)
                started = time.perf_counter()
                logits, evaluated = decode_grid_coarse_to_fine(ae, latent, config)
                mesh = logits_to_mesh(logits, config)
                timing[f"{resolution}{'_coarse_to_fine' if coarse else '_dense'}"] = {
                    "seconds": round(time.perf_counter() - started, 3), "points": evaluated, "faces": mesh.num_faces}
            timing[f"{resolution}_speedup"] = round(timing[f"{resolution}_dense"]["seconds"]
                                                    / timing[f"{resolution}_coarse_to_fine"]["seconds"], 2)
        print("seconds per shape (decode, marching cubes, clean-up):")
        for res in (64, 128):
            c2f, dense = timing[f"{res}_coarse_to_fine"], timing[f"{res}_dense"]
            print(f"  {res}^3: coarse-to-fine {c2f['seconds']:.3f} s ({c2f['points']} points), dense "
                  f"{dense['seconds']:.3f} s ({dense['points']} points), speed-up {timing[f'{res}_speedup']:.2f}x")
    except InvalidInputError as exc:
        timing["error"] = exc.message
        print(f"timing not measured: {exc.message}")
    report["seconds_per_shape"] = timing
    if device.type != "cuda":
        print("  on a CUDA GPU: not measured (run with --device cuda where one is at hand)")
    report["bench_seconds"] = round(time.perf_counter() - started_all, 1)
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"\nwrote {args.report} ({report['bench_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
