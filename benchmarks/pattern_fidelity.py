"""Pattern fidelity of texture restyles: does a restyled object show the style's pattern from new views?

For each style (stripes at 0 and 45 degrees, checks, dots, waves: `backend.stylize.pattern_check.synthetic_pattern`,
and the demo's three-colour diagonal stripes) and each mesh (a sphere and a cube, both unwrapped with xatlas),
`restyle()` runs with the domain CLIP under each variant of the loss; then the restyled object is rendered from
`VIEWS` held-out cameras (fixed azimuths at two elevations, unlit: the albedo, since a highlight is no pattern)
and each view's pattern is read by the spectral classifier (`classify_pattern`), which shares nothing with the
losses. A view matches when its label equals the style image's own label (stripes carry their angle bucket).

Used by `restyle_bench.py --pattern` (the table) and runnable alone:

    python benchmarks/pattern_fidelity.py [--steps 150] [--variants colour,clip,draft] [--report FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from backend.geometry.mesh import Mesh
from backend.geometry.primitives import cube, icosphere
from backend.render.camera import fit_distance, orbit_cameras
from backend.stylize.pattern_check import classify_pattern, synthetic_pattern
from backend.stylize.restyle import RestyleConfig, RestyleRun, preset, restyle
from backend.stylize.texture import TextureTermConfig

STYLE_SIDE = 256
"""Style images are this many pixels a side (resized to the render size by the restyler)."""
STYLE_PERIOD = 48.0
"""Pattern period in the style images, in pixels (about 5 periods across a render that the object fills)."""


def demo_stripes(size: int = STYLE_SIDE) -> np.ndarray:
    """tools/demo_scene.stripes_png's image: orange, blue and near-black diagonal bands 24 px wide."""
    y, x = np.mgrid[0:size, 0:size]
    colours = np.array([[230, 120, 30], [40, 90, 200], [25, 25, 30]], np.float32) / 255.0
    return colours[((x + y) // 24) % 3]


def styles() -> dict[str, np.ndarray]:
    """Name -> style image [S, S, 3] float32."""
    make = lambda kind, angle=0.0: synthetic_pattern(kind, STYLE_SIDE, STYLE_PERIOD, angle)  # noqa: E731
    return {"stripes 0": make("stripes"), "stripes 45": make("stripes", 45.0), "checks": make("checks"),
            "dots": make("dots"), "waves": make("waves"), "demo stripes": demo_stripes()}


SYNTHETIC = ("stripes 0", "stripes 45", "checks", "dots", "waves")
"""The styles of the target (match >= 0.8 on both meshes); "demo stripes" is reported beside them."""


def meshes() -> dict[str, Mesh]:
    return {"sphere": icosphere(4), "cube": cube(1.0)}


PAPER_OPTIMISER = {"texture": TextureTermConfig(), "style_levels": 1, "learning_rate": 1e-2,
                   "learning_rate_end": 1.0}
"""The optimiser before the texture term: the paper's single full-size texture at a constant Adam lr 1e-2, CLIP alone."""

VARIANTS: dict[str, dict] = {
    "colour": {**PAPER_OPTIMISER, "style_weight": 0.0, "content_weight": 0.0},
    "clip": PAPER_OPTIMISER,
    "draft": {},
    "draft-batch4": {"batch": 4},
    "draft-nocolour": {"texture": "nocolour"},
    "draft-gram-only": {"style_weight": 0.0, "content_weight": 0.0},
    "draft-nnfm": {"texture": "nnfm"},
    "draft-before": {"learning_rate": 2e-2, "learning_rate_end": 1.0,
                     "texture": {"mode": "gram", "spectrum_weight": 0.0}},
    "draft-no-swd": {"texture": {"mode": "gram"}},
    "draft-no-spectrum": {"texture": {"spectrum_weight": 0.0}},
    "draft-constant-lr": {"learning_rate_end": 1.0},
    "draft-levels+1": {"texture": {"extra_levels": 1}},
    "draft-no-density": {"density_levels": False},
}
"""Loss variants: colour-only (the palette term alone), NNFM on the domain CLIP (the draft preset before any
texture term), and the draft preset as it is now (on random multi-scale features a Gram and a sliced Wasserstein
term, an amplitude-spectrum term on whole views, the style texture as a pyramid of levels, the learning rate
decaying tenfold), also with 4 views a step (the standard preset's batch); then ablations of the draft: its
texture features without the colour channels, the texture terms without CLIP NNFM, the random features in the
NNFM bank instead of a Gram term (slow on CPU), the draft before the sliced Wasserstein and spectrum terms and
the decay (Gram alone at a constant lr 2e-2), without the sliced Wasserstein term, without the spectrum term,
at a constant learning rate, with one more level of random features, with every style level summed everywhere
(no density levels)."""

DEFAULT_VARIANTS = ("colour", "clip", "draft")
DEFAULT_STEPS = 150
"""The draft preset's step count."""

VIEWS = [(azimuth, elevation) for elevation in (-15.0, 20.0) for azimuth in (20.0, 110.0, 200.0, 290.0)]
"""Held-out (azimuth, elevation) pairs in degrees."""


def held_out_views(run: RestyleRun) -> list[np.ndarray]:
    """The restyled object from `VIEWS`, unlit (the albedo: a highlight is no pattern), as (image [H, W, 3]
    float, mask [H, W] bool) pairs."""
    azimuth = torch.tensor([a for a, _ in VIEWS])
    elevation = torch.tensor([e for _, e in VIEWS])
    distance = fit_distance(run.config.fov_deg) * run.config.pattern_scale
    cameras = orbit_cameras(azimuth, elevation, distance, run.config.fov_deg, device=run.device)
    lights = cameras.eye * 1.5 + torch.tensor([0.0, 2.0, 0.0], device=run.device)
    with torch.no_grad():
        images, alpha = run.render(run.texture(), cameras, lights, shade=False)
    return [(im.permute(1, 2, 0).cpu().numpy(), a[0].cpu().numpy() > 0.5) for im, a in zip(images, alpha)]


class CapturedRun:
    """Keeps the `RestyleRun` that `restyle()` builds, so its final texture can be rendered from new views."""

    def __init__(self):
        self.run = None
        self.original = RestyleRun.__init__

    def __enter__(self):
        captured, original = self, self.original

        def init(run, *args, **kwargs):
            original(run, *args, **kwargs)
            captured.run = run

        RestyleRun.__init__ = init
        return self

    def __exit__(self, *exc):
        RestyleRun.__init__ = self.original


def fidelity(mesh: Mesh, style: np.ndarray, config: RestyleConfig, clip, device: str = "cpu") -> dict:
    """One restyle, judged: the style's label, each held-out view's label, and the share that match."""
    expected = classify_pattern(style).label
    with CapturedRun() as captured:
        result = restyle(mesh, [style], clip, config, device=device)
    labels = [classify_pattern(image, mask).label for image, mask in held_out_views(captured.run)]
    return {"expected": expected, "labels": labels, "match": sum(l == expected for l in labels) / len(labels),
            "loss_first": result.losses[0], "loss_last": result.losses[-1], "seconds": result.seconds,
            "run": captured.run}


def base_config(steps: int, render_size: int, texture_size: int, batch: int) -> RestyleConfig:
    """The draft preset at the benchmark's size. Its texture term's pyramid loses a level per halving of the
    render size, so its filters reach the same share of the view (the style image is resized to the render)."""
    draft = preset("draft")
    halvings = max(0, round(math.log2(draft.render_size / render_size)))
    texture = replace(draft.texture, levels=max(1, draft.texture.levels - halvings))
    return preset("draft", steps=steps, render_size=render_size, texture_size=texture_size, batch=batch,
                  renderer="torch", preview_every=10_000, texture=texture)


def variant_config(base: RestyleConfig, variant: str) -> RestyleConfig:
    """`base` with a variant's changes ("nocolour"/"nnfm" edit the base's texture term)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    changes = dict(VARIANTS[variant])
    if changes.get("texture") == "nocolour":
        changes["texture"] = replace(base.texture, colour=False)
    elif changes.get("texture") == "nnfm":
        changes["texture"] = replace(base.texture, mode="nnfm")
    elif isinstance(changes.get("texture"), dict):
        edits = dict(changes["texture"])
        edits["levels"] = base.texture.levels + edits.pop("extra_levels", 0)
        changes["texture"] = replace(base.texture, **edits)
    config = replace(base, **changes)
    config.check()
    return config


def run_table(clip, variants: list[str], steps: int, render_size: int = 128, texture_size: int = 256,
              batch: int = 2, device: str = "cpu", style_names: list[str] | None = None,
              mesh_names: list[str] | None = None, log=print) -> dict:
    """Every (variant, mesh, style): the match share of the held-out views; and per variant the mean."""
    all_styles, all_meshes = styles(), meshes()
    rows, summary, synthetic_summary = [], {}, {}
    base = base_config(steps, render_size, texture_size, batch)
    for variant in variants:
        config = variant_config(base, variant)
        matches = []
        for mesh_name in mesh_names or list(all_meshes):
            for style_name in style_names or list(all_styles):
                start = time.perf_counter()
                out = fidelity(all_meshes[mesh_name], all_styles[style_name], config, clip, device)
                out.pop("run")
                rows.append({"variant": variant, "mesh": mesh_name, "style": style_name, **out,
                             "wall_seconds": time.perf_counter() - start})
                matches.append(out["match"])
                log(f"  {variant:<17} {mesh_name:<7} {style_name:<13} expected {out['expected']:<11} "
                    f"match {out['match']:.2f}  views {', '.join(out['labels'])}  ({rows[-1]['wall_seconds']:.0f} s)")
        summary[variant] = float(np.mean(matches))
        synthetic = [r["match"] for r in rows if r["variant"] == variant and r["style"] in SYNTHETIC]
        synthetic_summary[variant] = float(np.mean(synthetic)) if synthetic else float("nan")
    return {"steps": steps, "render_size": render_size, "texture_size": texture_size, "batch": batch,
            "views": len(VIEWS), "rows": rows, "mean_match": summary, "mean_match_synthetic": synthetic_summary}


def print_table(table: dict, log=print) -> None:
    rows = table["rows"]
    cases = sorted({(r["mesh"], r["style"]) for r in rows}, key=lambda c: (c[0], list(styles()).index(c[1])))
    variants = list(table["mean_match"])
    log(f"\npattern fidelity: share of {table['views']} held-out views whose pattern class matches the style's "
        f"({table['steps']} steps, {table['batch']} views at {table['render_size']} px, "
        f"{table['texture_size']} px texture, domain CLIP)")
    log(f"{'mesh':<7} {'style':<13} " + " ".join(f"{v:>17}" for v in variants))
    for mesh_name, style_name in cases:
        cells = {r["variant"]: r["match"] for r in rows if (r["mesh"], r["style"]) == (mesh_name, style_name)}
        log(f"{mesh_name:<7} {style_name:<13} " + " ".join(f"{cells.get(v, float('nan')):>17.2f}" for v in variants))
    log(f"{'mean':<21} " + " ".join(f"{table['mean_match'][v]:>17.3f}" for v in variants))
    log(f"{'mean, 5 synthetic':<21} " + " ".join(f"{table['mean_match_synthetic'][v]:>17.3f}" for v in variants))


def main() -> None:
    from backend.models.clip import load_clip

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--render-size", type=int, default=128)
    parser.add_argument("--texture-size", type=int, default=256)
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--styles", default="", help="comma-separated style names (default: all)")
    parser.add_argument("--meshes", default="", help="comma-separated mesh names (default: sphere,cube)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--report", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = run_table(load_clip("domain"), args.variants.split(","), args.steps, args.render_size, args.texture_size,
                      style_names=[s for s in args.styles.split(",") if s] or None,
                      mesh_names=[m for m in args.meshes.split(",") if m] or None)
    print_table(table)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
