"""Photo to 3D on world photos whose true shapes are known: retrieval, generation and Gaussian reconstruction.

    python benchmarks/photo_to_3d_bench.py [--photos 8] [--held-out sofa,lamp] [--per-category 5] [--steps 100]
        [--texture-steps 30] [--size 64] [--gaussians 1500] [--methods retrieve,generate,sphere,prior,auto]
        [--masks true,segmented] [--seed 0] [--threads 2] [--report benchmarks/results/photo_to_3d_bench.json]

The library: `--per-category` world shapes of every category except the `--held-out` ones (none of their
instances is in it), indexed with the domain CLIP. The photos: `render_photo` of held-out world shapes (never in
the library, never seen by the domain CLIP), categories taking turns, over clutter with distractors. Each photo's
object is taken with its true mask and with the segmenter's (caption prompt; SAM where its weights are, else
superpixels). Methods:

- retrieve: the library's top-1 shape (`atelier photo-to-3d --method retrieve`, whose restyle changes no geometry);
- generate: the shipped generator's sample (its flow's mode) for the object's CLIP image embedding;
- sphere: Gaussians from a sphere (DreamGaussian's start), CLIP guidance, then the mesh (`--init sphere`);
- prior: Gaussians from the better-fitting of the retrieval and generator priors (`--init best`);
- auto: Gaussians from the retrieved shape (`--method auto`, `--init retrieve`).

Scores against the true shape (`backend.reconstruct.shape_metrics`): voxel IoU (32^3) and Chamfer distance at the
best rotation about +Y, both in the unit sphere; the reference-view mask IoU of the result (its silhouette at the
reference camera against the mask it was given); seconds per photo. Rows are split by whether the photo's category
is in the library. The generator was trained on every category, so "held out" holds out the library only.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from backend.errors import InvalidInputError
from backend.models.clip import load_clip
from backend.models.domain_world import heldout_plan
from backend.reconstruct.extract import MeshExtractConfig
from backend.reconstruct.fit_gaussians import GaussianFitConfig
from backend.reconstruct.priors import generator_prior, retrieval_prior
from backend.reconstruct.reconstruct import ReconstructConfig, reconstruct
from backend.reconstruct.reference_view import ViewFitConfig, fitted_view
from backend.reconstruct.shape_metrics import aligned_shape_scores, mask_iou
from backend.render.renderer import MeshRenderer, RenderConfig
from backend.world.families import CATEGORIES
from backend.world.shape import make_shape
from backend.world.views import render_photo

RESULTS = Path(__file__).parent / "results" / "photo_to_3d_bench.json"
METHODS = ("retrieve", "generate", "sphere", "prior", "auto")
LIBRARY_SEED = 700_000
SEED_PAPER = {"dreamgaussian_seconds": 120, "note": "DreamGaussian: about 2 minutes per image on an A100 (stage 1 "
              "and 2, Zero123 SDS); its paper reports CLIP similarity, not 3D IoU"}


def build_library(root: Path, categories: list[str], per_category: int, clip):
    """The library folder and its index (domain CLIP): (db, encoder)."""
    from backend.geometry.glb import export_glb
    from backend.retrieve.database import LibraryDB
    from backend.retrieve.indexer import index_library
    from backend.retrieve.query import QueryEncoder

    library = root / "library"
    library.mkdir(parents=True)
    labels = {}
    for category in categories:
        for i in range(per_category):
            shape = make_shape(LIBRARY_SEED + 1000 * CATEGORIES.index(category) + i, category)
            name = f"{category}_{i:03d}.glb"
            (library / name).write_bytes(export_glb(shape.mesh, name=name))
            labels[name] = category
    (library / "categories.json").write_text(json.dumps(labels))
    encoder = QueryEncoder(clip)
    index_library(library, root / "db", encoder)
    return LibraryDB.open(root / "db"), encoder


def photos(count: int, size: int, seed: int) -> list[tuple]:
    out = []
    for i, (shape_seed, category) in enumerate(heldout_plan(count)):
        shape = make_shape(shape_seed, category)
        photo = render_photo(shape, size=size, generator=torch.Generator().manual_seed(seed * 100_003 + i))
        out.append((shape, photo.image.numpy(), photo.mask.numpy()))
    return out


def reference_mask_iou(mesh, view) -> float:
    renderer = MeshRenderer(RenderConfig(size=view.mask.shape[0]))
    out = renderer.render(torch.as_tensor(mesh.vertices, dtype=torch.float32),
                          torch.as_tensor(mesh.faces).int(), view.camera)
    return mask_iou(out.alpha[0, ..., 0] > 0.5, view.mask > 0.5)


def run_method(method: str, image, mask, clip, db, encoder, generator, config: ReconstructConfig) -> dict:
    """One method on one photo: its mesh's scores need the truth, so this returns the mesh and facts."""
    from backend.segment.photo_query import object_crop

    started = time.perf_counter()
    if method in ("retrieve", "generate"):
        crop = object_crop(image, mask)
        prior = retrieval_prior(crop, db, encoder)[0] if method == "retrieve" else generator_prior(crop, generator, clip)
        view = fitted_view(image, mask, prior.mesh, config.view, clip=clip)
        mesh, facts = prior.mesh, {"prior": prior.label}
    else:
        init = {"sphere": "sphere", "prior": "best", "auto": "retrieve"}[method]
        result = reconstruct(image, mask, clip, replace(config, init=init), db=db, encoder=encoder,
                             generator=generator)
        mesh, view = result.mesh, result.reference
        facts = {"prior": result.prior.label if result.prior else None, "gaussians": len(result.fit.model),
                 "loss_first": result.fit.losses[0], "loss_last": result.fit.losses[-1]}
    seconds = time.perf_counter() - started
    return {"mesh": mesh, "view": view, "seconds": seconds, **facts}


def summarise(rows: list[dict]) -> dict:
    if not rows:
        return {}
    mean = lambda key: round(statistics.fmean(r[key] for r in rows), 4)  # noqa: E731
    return {"photos": len(rows), "voxel_iou": mean("voxel_iou"), "chamfer": mean("chamfer"),
            "mask_iou": mean("mask_iou"), "seconds": mean("seconds"), "failures": sum(r.get("failed", 0) for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--held-out", default="sofa,lamp", help="categories none of whose shapes is in the library")
    parser.add_argument("--per-category", type=int, default=5, help="library shapes per other category")
    parser.add_argument("--steps", type=int, default=100, help="Gaussian steps")
    parser.add_argument("--texture-steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=64, help="reference and novel views' side")
    parser.add_argument("--gaussians", type=int, default=1500)
    parser.add_argument("--photo-size", type=int, default=128)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--masks", default="true,segmented")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--report", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    held_out = [c for c in args.held_out.split(",") if c]
    unknown = [c for c in held_out if c not in CATEGORIES]
    if unknown:
        raise SystemExit(f"unknown categories {unknown}: choose from {', '.join(CATEGORIES)}")
    methods = [m for m in args.methods.split(",") if m]
    masks = [m for m in args.masks.split(",") if m]
    clip = load_clip("domain")
    from backend.generate.generator import load_generator
    from backend.generate.shipped import resolve_generator
    from backend.segment.segment import SegmentConfig, segment

    generator = load_generator(resolve_generator(None))
    config = ReconstructConfig(gaussians=args.gaussians, view=ViewFitConfig(size=args.size),
                               fit=GaussianFitConfig(steps=args.steps, preview_every=0),
                               mesh=MeshExtractConfig(refine_steps=args.texture_steps))
    root = Path(tempfile.mkdtemp(prefix="atelier-p3d-bench-"))
    rows: list[dict] = []
    try:
        db, encoder = build_library(root, [c for c in CATEGORIES if c not in held_out], args.per_category, clip)
        data = photos(args.photos, args.photo_size, args.seed)
        for index, (shape, image, true_mask) in enumerate(data):
            available = {"true": true_mask}
            if "segmented" in masks:
                try:
                    available["segmented"] = segment(image, shape.caption, clip, SegmentConfig()).mask
                except InvalidInputError:
                    available["segmented"] = None
            for mask_kind in masks:
                mask = available[mask_kind]
                for method in methods:
                    row = {"photo": index, "category": shape.category, "held_out": shape.category in held_out,
                           "mask": mask_kind, "method": method}
                    if mask is None:
                        row.update(voxel_iou=0.0, chamfer=1.0, mask_iou=0.0, seconds=0.0, failed=1)
                    else:
                        out = run_method(method, image, mask, clip, db, encoder, generator, config)
                        row.update(aligned_shape_scores(out["mesh"], shape.mesh),
                                   mask_iou=reference_mask_iou(out["mesh"], out["view"]),
                                   seconds=out["seconds"], prior=out.get("prior"))
                    rows.append(row)
                    print(f"photo {index} {shape.category:<6} {mask_kind:<9} {method:<8} IoU {row['voxel_iou']:.3f} "
                          f"CD {row['chamfer']:.3f} mask {row['mask_iou']:.3f} {row['seconds']:.1f} s "
                          f"{row.get('prior') or ''}", flush=True)
        db.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    table = {}
    print(f"\nphoto_to_3d_bench: {len(data)} world photos ({args.photo_size} px), library without "
          f"{', '.join(held_out)} ({args.per_category} per other category), domain CLIP, {args.steps} Gaussian steps "
          f"at {args.size} px, {args.gaussians} Gaussians, {torch.get_num_threads()} thread(s)")
    header = (f"{'mask':<10} {'method':<9} {'IoU all':>8} {'IoU lib':>8} {'IoU held':>9} {'CD all':>7} "
              f"{'CD held':>8} {'mask IoU':>9} {'s/photo':>8}")
    print(header)
    print("-" * len(header))
    for mask_kind in masks:
        for method in methods:
            mine = [r for r in rows if r["mask"] == mask_kind and r["method"] == method]
            entry = {"all": summarise(mine), "library_categories": summarise([r for r in mine if not r["held_out"]]),
                     "held_out_categories": summarise([r for r in mine if r["held_out"]])}
            table[f"{mask_kind}/{method}"] = entry
            get = lambda part, key: entry[part].get(key, float("nan"))  # noqa: E731
            print(f"{mask_kind:<10} {method:<9} {get('all', 'voxel_iou'):>8.3f} "
                  f"{get('library_categories', 'voxel_iou'):>8.3f} {get('held_out_categories', 'voxel_iou'):>9.3f} "
                  f"{get('all', 'chamfer'):>7.3f} {get('held_out_categories', 'chamfer'):>8.3f} "
                  f"{get('all', 'mask_iou'):>9.3f} {get('all', 'seconds'):>8.1f}")
    result = {
        "command": "photo_to_3d_bench", "seconds": round(time.perf_counter() - started, 1), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "photos": len(data), "held_out": held_out, "per_category": args.per_category, "steps": args.steps,
        "texture_steps": args.texture_steps, "size": args.size, "gaussians": args.gaussians, "seed": args.seed,
        "clip": clip.spec, "table": table, "rows": rows, "seed_paper": SEED_PAPER,
    }
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
