"""Seconds per Text2Mesh step, split by phase, against the CLIP forward + backward alone, in one run.

    python benchmarks/stylize_bench.py [--device cpu] [--repeats 3] [--report FILE] [--threads N]
                                       [--presets draft,standard,high] [--clips tiny,domain] [--skip-step]

1. One optimisation step of the paper's configuration (5 views at 224 px; 1 global + 4 local + 4 geometry
   augmentations = 45 CLIP images) on a ~10k-face bumpy sphere, with a ViT-B-32-sized CLIP (random weights:
   timing only), split into render (style field + rasterization, forward), CLIP (augmentations + image
   tower + loss, forward), backward (all of it) and optimiser (Adam + schedule). Beside it, interleaved so
   a busy machine slows both alike: the ViT-B-32 image tower forward + backward alone on the same 45 images.
   Target: whole step / CLIP alone <= 1.3.
2. The `draft` preset (or those named with --presets) end to end (stylize(), set-up included) on the same mesh
   with the tiny CLIP, and with the domain CLIP when it is on this machine ("not measured" otherwise).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render_bench import bumpy_sphere  # noqa: E402  (the render benchmark's ~10k-face mesh)
from timing import PhaseClock, sync  # noqa: E402

from backend.errors import WeightsMissingError  # noqa: E402
from backend.geometry.mesh import Mesh  # noqa: E402
from backend.geometry.normalize import normalize_to_unit_sphere  # noqa: E402
from backend.models.clip import clip_from_config, load_clip  # noqa: E402
from backend.stylize.losses import encode_prompts  # noqa: E402
from backend.stylize.surface import weld  # noqa: E402
from backend.stylize.text2mesh import Text2MeshConfig, Text2MeshRun, preset, stylize  # noqa: E402

PROMPT = "a vase made of colorful crochet"


def vit_b32(device: str):
    """A ViT-B-32-sized CLIP with random weights (open_clip's config, seeded), as a `ClipModel`."""
    import open_clip

    return clip_from_config(open_clip.get_model_config("ViT-B-32"), name="ViT-B-32-random", device=device)



def step_phases(run: Text2MeshRun, index: int, device: str) -> dict[str, float]:
    """One optimisation step, timed phase by phase (the same calls `Text2MeshRun.step` makes)."""
    clock = PhaseClock(device)
    times, lap = clock.times, clock.lap
    run.optimizer.zero_grad(set_to_none=True)
    colors, offsets = run.predict(index)
    images = run.render(colors, offsets)
    lap("render")
    loss, _ = run.objective(images)
    lap("clip")
    loss.backward()
    lap("backward")
    run.update()
    lap("optimiser")
    times["step"] = sum(times.values())
    return times


def clip_alone(clip, images: int, device: str, text: torch.Tensor):
    """The image tower forward + backward on `images` random 224-px images, with the same cosine loss."""
    batch = torch.rand(images, 3, clip.image_size, clip.image_size, device=device, requires_grad=True)

    def once() -> float:
        start = time.perf_counter()
        embeddings = clip.encode_image(batch, normalize=False)
        loss = -torch.nn.functional.cosine_similarity(embeddings.mean(0, keepdim=True), text).sum()
        loss.backward()
        sync(device)
        return time.perf_counter() - start

    return once


def images_per_step(config: Text2MeshConfig) -> int:
    return config.views * (config.global_augs + config.local_augs + config.geometry_augs)


def benchmark_step(mesh: Mesh, device: str, repeats: int) -> dict:
    clip = vit_b32(device)
    config = preset("high", renderer="auto")
    normalised, _ = normalize_to_unit_sphere(mesh)
    text = encode_prompts(clip, [PROMPT]).to(device)
    run = Text2MeshRun(weld(normalised.vertices, normalised.faces), text, clip, config, device,
                       torch.Generator().manual_seed(0))
    count = images_per_step(config)
    alone = clip_alone(clip, count, device, text)
    step_phases(run, 0, device)  # warm-up
    alone()
    samples, alone_samples = [], []
    for i in range(repeats):  # interleaved: load from other processes hits both alike
        samples.append(step_phases(run, i + 1, device))
        alone_samples.append(alone())
    median = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    clip_s = statistics.median(alone_samples)
    return {
        "clip": "ViT-B-32 (random weights)", "image_size": clip.image_size, "views": config.views,
        "clip_images_per_step": count, "faces": int(mesh.num_faces), "renderer": run.renderer.name,
        "seconds": median, "clip_alone_seconds": clip_s, "step_over_clip_alone": median["step"] / clip_s,
        "samples": samples, "clip_alone_samples": alone_samples,
    }


def benchmark_preset(mesh: Mesh, quality: str, spec: str, device: str) -> dict:
    try:
        clip = load_clip(spec, device)
    except WeightsMissingError as exc:
        return {"quality": quality, "clip": spec, "seconds": None, "note": f"not measured: {exc.message}"}
    config = preset(quality)
    start = time.perf_counter()
    result = stylize(mesh, PROMPT, clip, config, device=device)
    total = time.perf_counter() - start
    return {"quality": quality, "clip": spec, "image_size": clip.image_size, "steps": result.steps, "seconds": total,
            "loop_seconds": result.seconds, "seconds_per_step": result.seconds / result.steps,
            "clip_images_per_step": images_per_step(config), "faces": int(mesh.num_faces)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--report", default=None, help="write the JSON results here")
    parser.add_argument("--presets", default="draft", help="comma-separated presets to time end to end ('' for none)")
    parser.add_argument("--clips", default="tiny,domain", help="comma-separated CLIP specs for the presets")
    parser.add_argument("--skip-step", action="store_true", help="skip the per-step split (ViT-B-32)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    vertices, faces = bumpy_sphere(51)
    mesh = Mesh(vertices=vertices, faces=faces, name="bumpy_sphere")
    machine = (f"device {args.device}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
               f"{torch.get_num_threads()} threads")
    print(machine)
    step = None
    if not args.skip_step:
        step = benchmark_step(mesh, args.device, args.repeats)
        s = step["seconds"]
        print(f"\none step, paper config: {step['views']} views at {step['image_size']} px, "
              f"{step['clip_images_per_step']} CLIP images, {step['faces']} faces, {step['clip']}, "
              f"renderer {step['renderer']} (median of {args.repeats})")
        print(f"{'render':>9} {'CLIP':>9} {'backward':>9} {'optimiser':>9} {'step':>9} {'CLIP alone':>11} {'ratio':>7}")
        print(f"{s['render']:>9.3f} {s['clip']:>9.3f} {s['backward']:>9.3f} {s['optimiser']:>9.3f} {s['step']:>9.3f} "
              f"{step['clip_alone_seconds']:>11.3f} {step['step_over_clip_alone']:>7.3f}   (target ratio <= 1.3)")
    presets = []
    for quality in [q for q in args.presets.split(",") if q]:
        print(f"\n{quality} preset end to end (set-up included):")
        for spec in [c for c in args.clips.split(",") if c]:
            row = benchmark_preset(mesh, quality, spec, args.device)
            presets.append(row)
            if row["seconds"] is None:
                print(f"  {spec:<7} {row['note']}")
            else:
                print(f"  {spec:<7} {row['seconds']:8.1f} s total, {row['seconds_per_step']:.3f} s/step over "
                      f"{row['steps']} steps ({row['clip_images_per_step']} CLIP images of {row['image_size']} px "
                      "per step)")
    result = {"machine": machine, "device": args.device, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "repeats": args.repeats, "step": step, "presets": presets}
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
