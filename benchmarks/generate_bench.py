"""CLIP-Forge text-to-shape on the procedural world with the domain CLIP: train, then measure in one run.

    python benchmarks/generate_bench.py [--shapes 120] [--heldout 24] [--ae-steps 600] [--flow-steps 1500]
                                        [--refine-steps 20] [--threads 1] [--checkpoint CKPT]
                                        [--report benchmarks/results/generate_bench.json]

Library: the first `--shapes` train-split shapes of the domain CLIP's plan (`backend.models.domain_world.training_plan`),
written as GLB files in category folders. Held-out shapes: `heldout_plan` (neither the domain CLIP nor the generator
saw them). The generator trains on the CPU (`train_generator`: autoencoder, view embeddings, flow), or is reused
with --checkpoint (it must have been trained on this library: the fingerprint is checked).

(a) Image-conditioned reconstruction: each held-out shape's rendered view (one of the training cameras, seeded) is
    the condition; voxel IoU at 32^3 of the generated shape to the true one, for the flow's mode (temperature 0) and
    one sample at 0.8, against: unconditional samples (the condition replaced by the mean training embedding), a
    random library shape, and the autoencoder's own reconstruction of the held-out shape (a ceiling for the decoder).
(b) Text prompts: for each category, "a photo of a <category>" (the domain CLIP's prompt), `--samples` shapes at
    temperature 0.8; a shape's category is that of its nearest library shape by voxel IoU; accuracy against the
    same count of unconditional samples and chance.
(c) Refinement: one sample per category prompt refined `--refine-steps` steps; the domain-CLIP score of the prompt on
    the held-out cameras (never rendered while refining) before and after, the nearest-shape category accuracy
    before and after, and seconds per step.
Timing: seconds per shape to decode at 64^3 and 128^3, coarse to fine (from 32^3) against the dense grid.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from backend.generate.decode import DecodeConfig, decode_grid, decode_grid_coarse_to_fine, logits_to_mesh
from backend.generate.generate import prompt_condition
from backend.generate.generator import load_generator
from backend.generate.library import read_library, view_embeddings
from backend.generate.occupancy import voxel_iou
from backend.generate.refine import RefineConfig, heldout_views, refine_latent
from backend.generate.train_generator import GeneratorTrainConfig, train_generator
from backend.generate.flow import FlowConfig
from backend.generate.occupancy import OccupancyAutoencoderConfig
from backend.generate.train_autoencoder import AutoencoderTrainConfig
from backend.generate.train_flow import FlowTrainConfig
from backend.geometry.glb import export_glb
from backend.geometry.normalize import normalize_to_unit_sphere
from backend.geometry.voxelize import voxelize
from backend.models.clip import load_clip
from backend.models.domain_world import PROMPTS, heldout_plan, training_plan
from backend.world.shape import make_shape


def write_library(root: Path, count: int) -> None:
    plan, split = training_plan()
    chosen = [p for p, s in zip(plan, split) if s == "train"][:count]
    for index, (seed, category) in enumerate(chosen):
        folder = root / category
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{category}_{index:04d}.glb"
        if not path.exists():
            export_glb(make_shape(seed, category).mesh, path, name=path.stem)


def occupied(autoencoder, latent: torch.Tensor, resolution: int = 32) -> np.ndarray:
    return decode_grid(autoencoder, latent, resolution) > 0.0


def nearest_category(grid: np.ndarray, library_voxels: np.ndarray, categories: list[str]) -> str:
    scores = [voxel_iou(grid, other) for other in library_voxels]
    return categories[int(np.argmax(scores))]


def printed_progress(step: int, total: int, stage: str = "", **metrics) -> None:
    """Prints each stage's progress at every tenth of it (the bench runs for minutes)."""
    if step == total or step % max(1, total // 10) == 0:
        loss = f", loss {metrics['loss']:.4f}" if "loss" in metrics else ""
        print(f"  {stage} {step}/{total}{loss}  [{time.strftime('%H:%M:%S')}]", flush=True)


def mean(values) -> float:
    return float(statistics.fmean(values)) if len(values) else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", type=int, default=120)
    parser.add_argument("--heldout", type=int, default=24)
    parser.add_argument("--ae-steps", type=int, default=600)
    parser.add_argument("--flow-steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4, help="samples per category prompt in (b)")
    parser.add_argument("--refine-steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "atelier_generate_bench"))
    parser.add_argument("--checkpoint", default=None, help="reuse a generator trained on this library")
    parser.add_argument("--report", default="benchmarks/results/generate_bench.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    work = Path(args.work)
    library_dir = work / f"library_{args.shapes}"
    write_library(library_dir, args.shapes)
    clip = load_clip("domain", device)
    report: dict = {"machine": platform.machine(), "threads": args.threads, "device": str(device),
                    "shapes": args.shapes, "clip": clip.spec}

    # --- training
    checkpoint = Path(args.checkpoint) if args.checkpoint else work / f"generator_{args.shapes}.pt"
    if args.checkpoint is None:
        config = GeneratorTrainConfig(
            autoencoder=OccupancyAutoencoderConfig(encoder_channels=8, decoder_hidden=128),
            autoencoder_training=AutoencoderTrainConfig(steps=args.ae_steps, batch_size=args.batch,
                                                        points_per_shape=1024, seed=args.seed),
            flow=FlowConfig(hidden=256), views=6,
            flow_training=FlowTrainConfig(steps=args.flow_steps, batch_size=args.batch, learning_rate=5e-4,
                                          seed=args.seed))
        started = time.perf_counter()
        trained = train_generator(library_dir, checkpoint, clip, config, device=device, progress=printed_progress)
        report["train"] = {**trained.as_dict(), "seconds": round(time.perf_counter() - started, 1)}
        print(f"trained in {report['train']['seconds']:.0f} s: {trained.stage_seconds}, "
              f"reconstruction IoU {trained.reconstruction_iou:.3f}")
    library = read_library(library_dir, 32)
    generator = load_generator(checkpoint, device, library_fingerprint=library.fingerprint)
    ae, flow = generator.autoencoder, generator.flow
    categories = [c or "" for c in library.categories]
    gen = torch.Generator(device=device).manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train_conditions = view_embeddings(library.meshes, clip, 6, device)
    mean_condition = torch.nn.functional.normalize(train_conditions.reshape(-1, clip.embed_dim).mean(0), dim=0)

    # --- (a) held-out shapes' views as conditions
    held = heldout_plan(args.heldout)
    held_meshes = [normalize_to_unit_sphere(make_shape(seed, category).mesh)[0] for seed, category in held]
    held_voxels = np.stack([voxelize(m, 32) for m in held_meshes])
    held_views = view_embeddings(held_meshes, clip, 6, device)
    rows = {"conditioned, mode (T=0)": [], "conditioned, sample (T=0.8)": [], "unconditional sample (T=0.8)": [],
            "random library shape": [], "autoencoder reconstruction (ceiling)": []}
    for i, truth in enumerate(held_voxels):
        condition = held_views[i, int(rng.integers(6))].to(device)
        mode = flow.sample(condition, 1, gen, temperature=0.0)[0]
        sample = flow.sample(condition, 1, gen, temperature=0.8)[0]
        uncond = flow.sample(mean_condition.to(device), 1, gen, temperature=0.8)[0]
        with torch.no_grad():
            recon = ae.encode(torch.from_numpy(truth[None]).to(device))[0]
        rows["conditioned, mode (T=0)"].append(voxel_iou(occupied(ae, mode), truth))
        rows["conditioned, sample (T=0.8)"].append(voxel_iou(occupied(ae, sample), truth))
        rows["unconditional sample (T=0.8)"].append(voxel_iou(occupied(ae, uncond), truth))
        rows["random library shape"].append(voxel_iou(library.voxels[int(rng.integers(len(library.voxels)))], truth))
        rows["autoencoder reconstruction (ceiling)"].append(voxel_iou(occupied(ae, recon), truth))
    report["image_conditioned_iou"] = {k: mean(v) for k, v in rows.items()}
    report["heldout"] = len(held)

    # --- (b) category prompts
    names = sorted({c for c in categories if c})
    hits = {"prompt": [], "unconditional": []}
    per_category = {}
    for name in names:
        condition = prompt_condition(clip, PROMPTS["category"].format(name)).to(device)
        latents = flow.sample(condition, args.samples, gen, temperature=0.8)
        got = [nearest_category(occupied(ae, z), library.voxels, categories) for z in latents]
        hits["prompt"] += [g == name for g in got]
        per_category[name] = mean([g == name for g in got])
        for z in flow.sample(mean_condition.to(device), args.samples, gen, temperature=0.8):
            hits["unconditional"].append(nearest_category(occupied(ae, z), library.voxels, categories) == name)
    report["category_accuracy"] = {"prompt": mean(hits["prompt"]), "unconditional": mean(hits["unconditional"]),
                                   "chance": 1.0 / len(names), "per_category": per_category,
                                   "samples": len(hits["prompt"])}

    # --- (c) refinement
    refine_config = RefineConfig(steps=args.refine_steps, seed=args.seed, device=str(device))
    cameras, lights = heldout_views(refine_config, device)
    refined = {"before": [], "after": [], "category_before": [], "category_after": [], "seconds_per_step": []}
    for name in names:
        condition = prompt_condition(clip, PROMPTS["category"].format(name)).to(device)
        latent = flow.sample(condition, 1, gen, temperature=0.8)[0]
        try:
            result = refine_latent(ae, latent, condition, clip, refine_config)
        except Exception as exc:  # an empty surface mid-way is reported, not fatal to the bench
            print(f"refine {name}: {exc}")
            continue
        refined["before"].append(result.score_before)
        refined["after"].append(result.score_after)
        refined["seconds_per_step"].append(result.seconds_per_step)
        refined["category_before"].append(nearest_category(occupied(ae, latent), library.voxels, categories) == name)
        refined["category_after"].append(
            nearest_category(occupied(ae, result.latent.to(device)), library.voxels, categories) == name)
    report["refinement"] = {
        "steps": args.refine_steps, "prompts": len(refined["before"]),
        "clip_score_before": mean(refined["before"]), "clip_score_after": mean(refined["after"]),
        "improved": mean([a > b for a, b in zip(refined["after"], refined["before"])]),
        "category_accuracy_before": mean(refined["category_before"]),
        "category_accuracy_after": mean(refined["category_after"]),
        "seconds_per_step": mean(refined["seconds_per_step"])}

    # --- timing: seconds per shape
    timing = {}
    condition = prompt_condition(clip, PROMPTS["category"].format(names[0])).to(device)
    latent = flow.sample(condition, 1, gen, temperature=0.8)[0]
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
    report["seconds_per_shape"] = timing

    print("\n(a) held-out shapes, image-conditioned: voxel IoU at 32^3 (mean over", len(held), "shapes)")
    for k, v in report["image_conditioned_iou"].items():
        print(f"  {k:<40} {v:.3f}")
    acc = report["category_accuracy"]
    print(f"\n(b) category prompts ({acc['samples']} samples): accuracy {acc['prompt']:.3f}, "
          f"unconditional {acc['unconditional']:.3f}, chance {acc['chance']:.3f}")
    print("  per category: " + ", ".join(f"{k} {v:.2f}" for k, v in per_category.items()))
    r = report["refinement"]
    print(f"\n(c) refinement, {r['steps']} steps on {r['prompts']} prompts: held-out CLIP score "
          f"{r['clip_score_before']:.4f} -> {r['clip_score_after']:.4f} (improved on {r['improved']:.0%}); "
          f"category accuracy {r['category_accuracy_before']:.2f} -> {r['category_accuracy_after']:.2f}; "
          f"{r['seconds_per_step']:.3f} s/step")
    print("\nseconds per shape (decode + marching cubes):")
    print(f"  {'grid':<6} {'coarse-to-fine':>15} {'dense':>10} {'speedup':>8} {'points c2f':>11} {'points dense':>13}")
    for res in (64, 128):
        c2f, dense = timing[f"{res}_coarse_to_fine"], timing[f"{res}_dense"]
        print(f"  {res:<6} {c2f['seconds']:>15.3f} {dense['seconds']:>10.3f} {timing[f'{res}_speedup']:>8.2f} "
              f"{c2f['points']:>11} {dense['points']:>13}")
    if device.type != "cuda":
        print("  on a CUDA GPU: not measured (run with --device cuda where one is at hand)")
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"\nwrote {args.report}")


if __name__ == "__main__":
    main()
