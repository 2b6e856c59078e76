"""Seconds per texture-restyle step, split by phase, against the feature network alone, in one run.

    python benchmarks/restyle_bench.py [--device cpu] [--repeats 3] [--report FILE] [--threads N]
                                       [--size 256] [--batch 2] [--presets draft] [--clips RN50-random]
                                       [--skip-step] [--skip-nn]

1. One optimisation step at `--size` px renders and `--batch` views (the issue's CPU figure: 256 px, batch 2)
   on a ~10k-face bumpy sphere (unwrapped with xatlas) with a CLIP-RN50-sized image tower (random weights:
   timing only; the features are its layer2 + layer3), split into render (combined texture, shaded render,
   the no-grad original render for the content loss, the unlit render for the palette loss), features
   (forward), NN search (the nearest-neighbour search inside the NNFM loss), other losses, backward and
   update. Beside it, interleaved so a busy machine slows both alike: the feature network forward + backward
   alone on the same images. Ratio: whole step / feature network alone.
2. The nearest-neighbour search at the paper's size (512 px renders, batch 8, one 512 px style image) in
   blocks of `nn_chunk`^2: its time, and the block it holds against the full (render x style) matrix.
3. Presets end to end (`restyle()`, unwrap and set-up included) on the same mesh, with the RN50-sized tower
   (random weights) and, when present here, the domain CLIP; "not measured" for CLIPs whose weights are absent.
   `--preset-steps N` runs N steps of each preset instead (for the long ones: seconds per step).
4. With `--pattern`: pattern fidelity (`pattern_fidelity.py`): restyles of a sphere and a cube from striped (0 and
   45 degrees), checked, dotted and wavy style images and the demo's stripes, under each loss variant
   (`--pattern-variants`: colour-only, CLIP NNFM, the draft preset with its texture terms), judged from held-out
   views by the spectral pattern classifier; the share of views whose pattern class matches the style's. On 2
   busy CPU cores about 30 minutes at the default 150 steps, hence not run by default.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render_bench import bumpy_sphere  # noqa: E402  (the render benchmark's ~10k-face mesh)
from timing import PhaseClock, sync  # noqa: E402
import pattern_fidelity  # noqa: E402

import backend.stylize.nnfm as nnfm  # noqa: E402
from backend.errors import WeightsMissingError  # noqa: E402
from backend.geometry.mesh import Mesh  # noqa: E402
from backend.models.clip import ClipModel, clip_from_config, load_clip  # noqa: E402
from backend.stylize.features import make_extractor  # noqa: E402
from backend.stylize.nnfm import build_style_bank, nearest_neighbours  # noqa: E402
from backend.stylize.palette import extract_palette  # noqa: E402
from backend.stylize.restyle import (RestyleRun, build_run, prepare_mesh, preset, restyle,  # noqa: E402
                                     style_tensors)

RANDOM_RN50 = "RN50-random"
"""The name standing for a CLIP-RN50-sized model with seeded random weights (the cost of the real one)."""


def rn50(device: str) -> ClipModel:
    """A CLIP-RN50-sized model with random weights (open_clip's config, seeded)."""
    import open_clip

    return clip_from_config(open_clip.get_model_config("RN50"), name=RANDOM_RN50, device=device)


def clip_for(spec: str, device: str) -> ClipModel:
    return rn50(device) if spec == RANDOM_RN50 else load_clip(spec, device)


def style_image(side: int = 512) -> np.ndarray:
    """A seeded, colourful style image with structure at several scales: [side, side, 3] float32."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:side, 0:side] / side
    bands = 0.5 + 0.5 * np.sin(2 * np.pi * (6 * y + 2 * x))[..., None] * np.array([0.8, 0.3, -0.5])
    return np.clip(bands + 0.1 * rng.standard_normal((side, side, 3)), 0, 1).astype(np.float32)



class NNClock:
    """Times every call of the NNFM loss's nearest-neighbour search (patched in for the benchmark only)."""

    def __init__(self, device: str):
        self.device, self.seconds, self.original = device, 0.0, nnfm.nearest_neighbours

    def __enter__(self):
        def timed(*args, **kwargs):
            sync(self.device)
            start = time.perf_counter()
            out = self.original(*args, **kwargs)
            sync(self.device)
            self.seconds += time.perf_counter() - start
            return out

        nnfm.nearest_neighbours = timed
        return self

    def __exit__(self, *exc):
        nnfm.nearest_neighbours = self.original


def step_phases(run: RestyleRun, index: int, device: str) -> dict[str, float]:
    """One optimisation step (`RestyleRun.step`), timed phase by phase."""
    clock = PhaseClock(device)
    with NNClock(device) as nn:
        run.step(index, lap=clock.lap)
    times = clock.times
    times["nn_search"] = nn.seconds
    times["other_losses"] = times.pop("losses") - nn.seconds
    times["step"] = sum(times.values())
    return times


def features_alone(run: RestyleRun, images: torch.Tensor, device: str):
    """The feature network: forward of the original render (no grad) + forward and backward of the render."""
    batch = images.detach().clone().requires_grad_(True)

    def once() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            run.extractor(batch)
        loss = sum(f.square().mean() for f in run.extractor(batch))
        loss.backward()
        sync(device)
        return time.perf_counter() - start

    return once


def make_run(mesh: Mesh, clip: ClipModel, size: int, batch: int, device: str) -> RestyleRun:
    """The draft preset's optimisation as `restyle` builds it (texture terms included) at `size` px, `batch` views."""
    config = preset("draft", render_size=size, batch=batch, texture_size=512, renderer="auto")
    prepared = prepare_mesh(mesh, config)
    styles = style_tensors([style_image()], size, device)
    palette = torch.as_tensor(extract_palette([s[0].permute(1, 2, 0).cpu().numpy() for s in styles], 5))
    return build_run(prepared, styles, clip, palette, config, device, torch.Generator().manual_seed(0))


def benchmark_step(mesh: Mesh, clip: ClipModel, size: int, batch: int, device: str, repeats: int) -> dict:
    run = make_run(mesh, clip, size, batch, device)
    cameras, lights = run.views()
    alone = features_alone(run, run.render(run.texture().detach(), cameras, lights)[0], device)
    step_phases(run, 0, device)  # warm-up
    alone()
    samples, alone_samples = [], []
    for i in range(repeats):  # interleaved: load from other processes hits both alike
        samples.append(step_phases(run, i + 1, device))
        alone_samples.append(alone())
    median = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    features_s = statistics.median(alone_samples)
    return {
        "clip": clip.name, "extractor": run.extractor.name, "render_size": size, "batch": batch,
        "faces": int(run.faces.shape[0]), "renderer": run.renderer.name, "seconds": median,
        "features_alone_seconds": features_s, "step_over_features_alone": median["step"] / features_s,
        "samples": samples, "features_alone_samples": alone_samples,
    }


def benchmark_nn(clip: ClipModel, device: str, size: int = 512, batch: int = 8, chunk: int = 2048) -> dict:
    """The nearest-neighbour search at the paper's render size, per layer, in chunk x chunk blocks."""
    extractor = make_extractor(preset("high").features, clip, device)
    with torch.no_grad():
        renders = extractor(torch.rand(batch, 3, size, size, device=device))
        style = extractor(style_tensors([style_image(size)], size, device)[0])
    rows, total = [], 0.0
    for name, queries, keys in zip(extractor.layers, renders, style):
        q = queries.permute(0, 2, 3, 1).reshape(-1, queries.shape[1])
        k = keys.permute(0, 2, 3, 1).reshape(-1, keys.shape[1])
        sync(device)
        start = time.perf_counter()
        nearest_neighbours(q, k, chunk)
        sync(device)
        seconds = time.perf_counter() - start
        total += seconds
        rows.append({"layer": name, "render_features": int(q.shape[0]), "style_features": int(k.shape[0]),
                     "channels": int(q.shape[1]), "seconds": seconds,
                     "full_matrix_mib": q.shape[0] * k.shape[0] * 4 / 2**20,
                     "block_mib": min(chunk, q.shape[0]) * min(chunk, k.shape[0]) * 4 / 2**20})
    return {"render_size": size, "batch": batch, "chunk": chunk, "layers": rows, "seconds": total}


def benchmark_preset(mesh: Mesh, quality: str, spec: str, device: str, steps: int | None = None) -> dict:
    try:
        clip = clip_for(spec, device)
    except WeightsMissingError as exc:
        return {"quality": quality, "clip": spec, "seconds": None, "note": f"not measured: {exc.message}"}
    config = preset(quality, steps=steps)
    start = time.perf_counter()
    result = restyle(mesh, [style_image()], clip, config, device=device)
    total = time.perf_counter() - start
    return {"quality": quality, "clip": spec, "steps": result.steps, "seconds": total, "loop_seconds": result.seconds,
            "seconds_per_step": result.seconds / result.steps, "batch": config.batch,
            "render_size": config.render_size, "texture_size": config.texture_size, "faces": int(mesh.num_faces),
            "loss_first": result.losses[0], "loss_last": result.losses[-1],
            "preset_steps": preset(quality).steps, "full_run": result.steps == preset(quality).steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--report", default=None, help="write the JSON results here")
    parser.add_argument("--size", type=int, default=256, help="render size of the per-step split")
    parser.add_argument("--batch", type=int, default=2, help="views per step of the per-step split")
    parser.add_argument("--presets", default="draft", help="comma-separated presets to time end to end ('' for none)")
    parser.add_argument("--clips", default=f"{RANDOM_RN50},domain",
                        help=f"comma-separated CLIP specs for the presets ({RANDOM_RN50}: RN50-sized, random weights)")
    parser.add_argument("--preset-steps", type=int, default=None,
                        help="run the presets for this many steps instead of theirs (s/step of a long preset)")
    parser.add_argument("--skip-step", action="store_true", help="skip the per-step split")
    parser.add_argument("--skip-nn", action="store_true", help="skip the 512 px nearest-neighbour search")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--pattern", action="store_true", help="add the pattern-fidelity table (slow: see 4.)")
    parser.add_argument("--pattern-steps", type=int, default=pattern_fidelity.DEFAULT_STEPS,
                        help="optimisation steps of each pattern-fidelity restyle")
    parser.add_argument("--pattern-variants", default=",".join(pattern_fidelity.DEFAULT_VARIANTS),
                        help=f"comma-separated loss variants of the pattern table ({', '.join(pattern_fidelity.VARIANTS)})")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    vertices, faces = bumpy_sphere(51)
    mesh = Mesh(vertices=vertices, faces=faces, name="bumpy_sphere")
    machine = (f"device {args.device}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
               f"{torch.get_num_threads()} threads")
    print(machine)
    step = nn = None
    if not args.skip_step or not args.skip_nn:
        clip = rn50(args.device)
    if not args.skip_step:
        step = benchmark_step(mesh, clip, args.size, args.batch, args.device, args.repeats)
        s = step["seconds"]
        print(f"\none step: {step['batch']} views at {step['render_size']} px, {step['faces']} faces, "
              f"{step['clip']} {step['extractor']}, renderer {step['renderer']} (median of {args.repeats})")
        print(f"{'render':>8} {'features':>9} {'NN search':>10} {'losses':>8} {'backward':>9} {'update':>8} "
              f"{'step':>8} {'features alone':>15} {'ratio':>6}")
        print(f"{s['render']:>8.3f} {s['features']:>9.3f} {s['nn_search']:>10.3f} {s['other_losses']:>8.3f} "
              f"{s['backward']:>9.3f} {s['update']:>8.3f} {s['step']:>8.3f} {step['features_alone_seconds']:>15.3f} "
              f"{step['step_over_features_alone']:>6.2f}")
    if not args.skip_nn:
        nn = benchmark_nn(clip, args.device)
        print(f"\nnearest-neighbour search at {nn['render_size']} px, batch {nn['batch']}, one style image, "
              f"blocks of {nn['chunk']}^2:")
        print(f"{'layer':>8} {'render feats':>13} {'style feats':>12} {'channels':>9} {'seconds':>8} "
              f"{'full matrix MiB':>16} {'block MiB':>10}")
        for r in nn["layers"]:
            print(f"{r['layer']:>8} {r['render_features']:>13} {r['style_features']:>12} {r['channels']:>9} "
                  f"{r['seconds']:>8.3f} {r['full_matrix_mib']:>16.0f} {r['block_mib']:>10.1f}")
    presets = []
    for quality in [q for q in args.presets.split(",") if q]:
        print(f"\n{quality} preset end to end on {mesh.num_faces} faces (unwrap and set-up included):")
        for spec in [c for c in args.clips.split(",") if c]:
            row = benchmark_preset(mesh, quality, spec, args.device, args.preset_steps)
            presets.append(row)
            if row["seconds"] is None:
                print(f"  {spec:<12} {row['note']}")
            else:
                print(f"  {spec:<12} {row['seconds']:8.1f} s total, {row['seconds_per_step']:.3f} s/step over "
                      f"{row['steps']} steps ({row['batch']} views at {row['render_size']} px, "
                      f"{row['texture_size']} px texture)" +
                      ("" if row["full_run"] else f"; the full {row['preset_steps']} steps would take "
                       f"~{row['seconds_per_step'] * row['preset_steps']:.0f} s"))
    pattern = None
    if args.pattern:
        print("\npattern fidelity (domain CLIP):")
        try:
            clip = load_clip("domain", args.device)
        except WeightsMissingError as exc:
            pattern = {"note": f"not measured: {exc.message}"}
            print(f"  {pattern['note']}")
        else:
            variants = [v for v in args.pattern_variants.split(",") if v]
            unknown = [v for v in variants if v not in pattern_fidelity.VARIANTS]
            if unknown:
                parser.error(f"unknown pattern variant {unknown[0]!r}; choose from {', '.join(pattern_fidelity.VARIANTS)}")
            pattern = pattern_fidelity.run_table(clip, variants, args.pattern_steps, device=args.device)
            pattern_fidelity.print_table(pattern)
    result = {"machine": machine, "device": args.device, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "repeats": args.repeats, "step": step, "nn_search": nn,
              "presets": presets, "pattern": pattern}
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
