"""TASK-former on the procedural world: does sketch + text beat sketch alone and text alone at R@1?

    python benchmarks/retrieval_bench.py [--shapes 400] [--seeds 0 1 2] [--steps N] [--threads 1]
                                         [--hard-negative] [--report benchmarks/results/retrieval_bench.json]

1. Data: a world dataset (`write_dataset`: 400 shapes, seed 7, 64 px, 4 shaded views, 4 sketches and 2 photos
   per shape, test split 20% of each category by shape), written once and cached under
   `$ATELIER_HOME/cache/retrieval_bench/`. Its shapes are not the domain CLIP's training shapes (other seeds).
2. Protocol: `backend.retrieve.evaluate` (fixed in its docstring before any measurement): gallery = the test
   shapes, each the mean of its views' embeddings; queries = each test shape's sketches, its caption, each
   sketch with the caption, its photos; Recall@1/5/10; chance = K / gallery size.
3. Baseline: the domain CLIP zero-shot (sketches through its image tower, feature addition, no training).
4. TASK-former: trained from the domain CLIP on the train split with the default `TrainConfig` (InfoNCE,
   losses 100 : 10 : 1), one run per seed; each run is timed (the target: under 5 CPU minutes).
   `--hard-negative` adds the same recipe with the hard-negative loss (Robinson et al.) per seed. The
   "taskformer" rows train without photos (photo_weight 0); `--photo-weight W` (> 0) adds "taskformer+photo":
   the same recipe with the photo term (issue 20: the train split's photos, cut out by saliency as `search
   --image` cuts them, contrasted with their shapes' views; `backend.retrieve.photo_crops`). Each trained
   model also gets the photo rows of 5. on the same test photos, with its own fine-tuned CLIP cutting (the
   prompt's relevance map) and embedding, as `search_photo` does with a TASK-former checkpoint.
5. Photo rows (issue 20: a photo query is cut out before it is embedded), zero-shot with the domain CLIP, on the
   same gallery in the same run: each test photo embedded raw (the protocol's photo row), cut out by saliency
   (`cut_photo` without a prompt: what `search --image` does), cut out by a prompt naming the shape's colour and
   category ("a red chair"), and cut out with its true mask (the dataset's masks/: the ceiling of the crop, which
   separates mask quality from the embedding); each cut is the crop on white at the photo's size, embedded as
   `search` embeds a photo. Also the mean IoU of each found mask with the true mask, and how many cuts fell back
   to the raw photo (nothing found), and R@1 split by mask quality (IoU >= 0.7 or not). `--photo-size N` adds
   the same rows on new photos of the test shapes rendered at N px (a diagnostic of resolution: the dataset's are
   64 px). `--no-train` measures the zero-shot and photo rows only.
6. Sketches (issue 20): queries are framed as a search frames a user's sketch, and the "sketch" row scores them
   as a search does, against each test shape's index line drawings (`sketch_domain.cached_index_lines`); the
   row "sketch/views" keeps the earlier scoring against the shaded views. The default `TrainConfig` trains the
   sketch encoder with the lines term, stroke augmentation and 12 more sketches a shape from new viewpoints.
7. Composition protocol (`backend.retrieve.composition`): targets whose text names only colour and pattern,
   whose sketch shows only the instance, in a gallery of sketch twins and text twins; R@1 of sketch, text
   and sketch + text for the zero-shot CLIP and every trained model (the target: sketch + text above both by
   0.1); the full-caption rows of 2. stay beside it.
8. `--latency`: query latency p50/p99 over 100,000 shapes stored as the indexer stores them, the approximate
   index's recall@10 against exact search, and indexing throughput (shapes/s) with the domain CLIP: the
   functions of `benchmarks/retrieval_latency.py` (which also runs alone), added to this report.
9. `--points [CHECKPOINT]` (issue 23): the point-cloud descriptor's rows on the same test shapes, in the same run:
   the pre-aligned encoder zero-shot and fine-tuned on the train split with InfoNCE and HCL (from its weights and
   from scratch, `--points-steps` each), text and photo R@1/5/10, and the test meshes indexed for real with each
   descriptor (views, points, both): shapes/s, vector and database bytes per shape, R@K through `search`
   (`benchmarks/retrieval_points.py`).
Prints the table (mode x R@1/5/10: chance, zero-shot, trained mean +- std over seeds) and the answer as
measured; writes JSON.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from backend.models import load_clip
from backend.models.store import atelier_home
from backend.retrieve.data import RetrievalSplit, load_split, to_float
from backend.retrieve.composition import (COMPOSITION_MODES, CompositionConfig, CompositionSet, build_composition,
                                         evaluate_composition)
from backend.retrieve.evaluate import KS, MODES, SKETCH_VS_VIEWS, ZeroShot, evaluate
from backend.retrieve.photo_crops import label_prompt
from backend.retrieve.sketch_domain import cached_index_lines
from backend.retrieve.train import TrainConfig, train
from backend.world.dataset import MANIFEST, read_manifest, write_dataset

ROOT = Path(__file__).resolve().parents[1]
DATA = {"shapes": 400, "seed": 7, "size": 64, "views": 4, "sketches": 4, "photos": 2, "test_fraction": 0.2}
"""The benchmark's world dataset (fixed with the protocol, before the first measurement)."""
BUDGET_S = 300.0
"""Each training run must finish within this (5 CPU minutes)."""


def _sources_digest() -> str:
    digest = hashlib.sha256()
    for folder in ("world", "render", "geometry"):
        for path in sorted((ROOT / "backend" / folder).glob("*.py")):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def dataset(shapes: int, root: Path | None) -> tuple[Path, float, bool]:
    """(folder, seconds spent writing, whether it was cached) of the benchmark's world dataset."""
    spec = {**DATA, "shapes": shapes, "sources": _sources_digest()}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    folder = root or atelier_home() / "cache" / "retrieval_bench" / f"world_{key}"
    stamp = folder / "bench_key.json"
    if (folder / MANIFEST).is_file() and stamp.is_file() and json.loads(stamp.read_text()) == spec:
        return folder, 0.0, True
    started = time.perf_counter()
    write_dataset(folder, shapes, seed=DATA["seed"], views=DATA["views"], size=DATA["size"],
                  sketches=DATA["sketches"], photos=DATA["photos"], test_fraction=DATA["test_fraction"],
                  overwrite=True)
    stamp.write_text(json.dumps(spec, sort_keys=True))
    return folder, time.perf_counter() - started, False


def composition_set(config: CompositionConfig) -> tuple[CompositionSet, float, bool]:
    """(the composition protocol's set, seconds spent building it, whether it was cached)."""
    spec = {**config.__dict__, "sources": _sources_digest()}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    path = atelier_home() / "cache" / "retrieval_bench" / f"composition_{key}.pt"
    if path.is_file():
        raw = torch.load(path, map_location="cpu", weights_only=True)
        return CompositionSet(**raw), 0.0, True
    started = time.perf_counter()
    made = build_composition(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(made.__dict__), path)
    return made, time.perf_counter() - started, False


COMPOSITION_MARGIN = 0.1
"""Issue 20: on the composition protocol sketch + text R@1 must beat sketch alone and text alone by this much."""


def composition_answer(recall: dict) -> dict:
    """How far sketch + text R@1 is above each alone, and whether both margins reach COMPOSITION_MARGIN."""
    over_sketch = recall["sketch+text"]["r1"] - recall["sketch"]["r1"]
    over_text = recall["sketch+text"]["r1"] - recall["text"]["r1"]
    return {"over_sketch": over_sketch, "over_text": over_text,
            "met": over_sketch >= COMPOSITION_MARGIN and over_text >= COMPOSITION_MARGIN}


def summarise(runs: list[dict]) -> dict:
    """mode -> rK -> {"mean", "std" (sample, over seeds), "min", "max", "runs"}."""
    out: dict = {}
    for mode in runs[0]:
        out[mode] = {}
        for k in runs[0][mode]:
            values = [r[mode][k] for r in runs]
            out[mode][k] = {"mean": statistics.fmean(values),
                            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                            "min": min(values), "max": max(values), "runs": values}
    return out


def beats(recall: dict) -> bool:
    """Sketch + text R@1 strictly above both sketch only and text only."""
    return recall["sketch+text"]["r1"] > max(recall["sketch"]["r1"], recall["text"]["r1"])


def label_uniqueness(data) -> float:
    """Share of gallery shapes whose full label set (category, colour, pattern, attributes) no other has: the
    share a caption naming every label can single out."""
    keys = [(l["category"], l["colour"], l["pattern"], tuple(sorted(l["attributes"].items()))) for l in data.labels]
    counts = collections.Counter(keys)
    return sum(counts[k] == 1 for k in keys) / len(keys)


PHOTO_ROWS = ("raw", "saliency", "prompt", "true mask")
"""The photo rows: how each photo is cut before it is embedded."""


def _read_mask(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("L")) > 127


GOOD_MASK = 0.7
"""A found mask with at least this IoU with the true mask counts as good (the R@1 split by mask quality)."""


def dataset_photos(data: RetrievalSplit):
    """(shape index, photo [H, W, 3] float32, true mask [H, W] bool) of every test photo in the dataset."""
    records = {r["id"]: r for r in read_manifest(data.root)["shapes"]}
    for i in range(len(data)):
        for k in range(data.photos.shape[1]):
            yield (i, data.photos[i, k].numpy().astype(np.float32) / 255.0,
                   _read_mask(data.root / records[data.ids[i]]["masks"][k]))


def rendered_photos(data: RetrievalSplit, size: int, per_shape: int):
    """(shape index, photo, true mask): `per_shape` new photos of each test shape at `size` px (the diagnostic:
    their own viewpoints and clutter, seeded by the shape's seed + 1000 + k)."""
    from backend.world.shape import make_shape
    from backend.world.views import render_photo

    records = {r["id"]: r for r in read_manifest(data.root)["shapes"]}
    for i in range(len(data)):
        record = records[data.ids[i]]
        shape = make_shape(record["seed"], record["category"])
        for k in range(per_shape):
            photo = render_photo(shape, size=size, generator=torch.Generator().manual_seed(record["seed"] + 1000 + k))
            yield i, photo.image.numpy().astype(np.float32), photo.mask.numpy().astype(bool)


def protocol_gallery(clip, data: RetrievalSplit):
    """[N, D] unit rows: each test shape's mean view embedding, normalised (the protocol's gallery)."""
    import torch.nn.functional as F

    n, views = len(data), data.views.shape[1]
    view_emb = torch.cat([clip.encode_image(to_float(data.views[i])) for i in range(n)])
    return F.normalize(view_emb.view(n, views, -1).mean(dim=1).float().cpu(), dim=-1)


@torch.no_grad()
def photo_rows(clip, data: RetrievalSplit, gallery: torch.Tensor, photos, ks=KS, embed=None) -> dict:
    """Recall@K of `photos` ((shape index, photo, true mask) per query) cut four ways (module docstring, 5.)
    against `gallery`; with the found masks' IoU against the true masks, R@1 split by mask quality (IoU >=
    GOOD_MASK or not), the fall-backs to the raw photo and the seconds each way took. embed: images [B, 3, H, W]
    -> [B, D] (default `clip.encode_image`; a TASK-former's `encode_photo`); `clip` cuts (the prompt's relevance)."""
    from backend.retrieve.evaluate import ranks, recall_at
    from backend.segment.photo_query import PhotoQueryConfig, cut_photo, object_crop

    config = PhotoQueryConfig()
    embedded = {row: [] for row in PHOTO_ROWS}
    ious = {"saliency": [], "prompt": []}
    precision = {"saliency": [], "prompt": []}  # the share of the found mask on the object: low = clutter taken
    coverage = {"saliency": [], "prompt": []}  # the share of the object the found mask covers: low = parts missed
    fallbacks = {"saliency": 0, "prompt": 0}
    seconds = dict.fromkeys(PHOTO_ROWS, 0.0)
    truth, sides = [], set()
    for i, image, true in photos:
        truth.append(i)
        sides.add(int(max(image.shape[:2])))
        for row in PHOTO_ROWS:
            t0 = time.perf_counter()
            if row == "raw":
                crop = image
            elif row == "true mask":
                crop = object_crop(image, true, config.margin)
            else:
                cut = cut_photo(image, clip, prompt=label_prompt(data.labels[i]) if row == "prompt" else None,
                                config=config)
                crop = cut.image
                if cut.mask is None:
                    fallbacks[row] += 1
                    ious[row].append(0.0)
                    precision[row].append(float(true.mean()))
                    coverage[row].append(1.0)
                else:
                    inter = float((cut.mask & true).sum())
                    ious[row].append(inter / max(1, (cut.mask | true).sum()))
                    precision[row].append(inter / max(1, cut.mask.sum()))
                    coverage[row].append(inter / max(1, true.sum()))
            tensor = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None]
            embedded[row].append((embed or clip.encode_image)(tensor).float().cpu())
            seconds[row] += time.perf_counter() - t0
    if not truth:
        raise SystemExit("retrieval_bench: the dataset has no photos")
    truth = torch.tensor(truth)
    out = {}
    for row in PHOTO_ROWS:
        rank = ranks(torch.cat(embedded[row]), gallery, truth)
        out[row] = {"recall": recall_at(rank, ks), "mean_rank": float(rank.float().mean()),
                    "seconds": round(seconds[row], 1)}
        if row in ious:
            good = torch.tensor(ious[row]) >= GOOD_MASK
            split = {}
            for name, chosen in ((f"iou>={GOOD_MASK}", good), (f"iou<{GOOD_MASK}", ~good)):
                split[name] = {"queries": int(chosen.sum()),
                               "r1": float((rank[chosen] < 1).float().mean()) if chosen.any() else None}
            out[row].update(mask_iou_mean=statistics.fmean(ious[row]), mask_iou_median=statistics.median(ious[row]),
                            mask_precision_mean=statistics.fmean(precision[row]),
                            mask_coverage_mean=statistics.fmean(coverage[row]),
                            masks_below_half_precision=int(sum(p < 0.5 for p in precision[row])),
                            masks_below_half_coverage=int(sum(c < 0.5 for c in coverage[row])),
                            raw_fallbacks=fallbacks[row], r1_by_mask_quality=split)
    out["queries"] = int(len(truth))
    out["image_sides"] = sorted(sides)
    return out


def print_photo_rows(photo: dict, chance: dict, title: str) -> None:
    ks = [f"r{k}" for k in KS]
    print(title, flush=True)
    print(f"{'photo cut':<12} {'mask IoU':>9} {'raw fall-backs':>15}" + "".join(f" {'R@' + k[1:]:>7}" for k in ks)
          + f" {'s/photo':>8}   R@1 by mask IoU (>= {GOOD_MASK} / below)")
    for row in PHOTO_ROWS:
        f = photo[row]
        iou = f"{f['mask_iou_mean']:.3f}" if "mask_iou_mean" in f else ("1" if row == "true mask" else "-")
        fall = str(f.get("raw_fallbacks", "-"))
        split = ""
        if "r1_by_mask_quality" in f:
            cells = [f"{v['r1']:.3f} of {v['queries']}" if v["r1"] is not None else f"- of {v['queries']}"
                     for v in f["r1_by_mask_quality"].values()]
            split = "   " + " / ".join(cells)
        print(f"{row:<12} {iou:>9} {fall:>15}" + "".join(f" {f['recall'][k]:>7.3f}" for k in ks)
              + f" {f['seconds'] / photo['queries']:>8.3f}{split}")
    print(f"{'chance':<12} {'':>9} {'':>15}" + "".join(f" {chance[k]:>7.3f}" for k in ks))
    for row in ("saliency", "prompt"):
        f = photo[row]
        print(f"  {row} masks: {f['mask_precision_mean']:.3f} of the mask on the object, "
              f"{f['mask_coverage_mean']:.3f} of the object covered (mean); precision < 0.5 in "
              f"{f['masks_below_half_precision']}, coverage < 0.5 in {f['masks_below_half_coverage']} of "
              f"{photo['queries']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", type=int, default=DATA["shapes"], help="world shapes (20%% become the test split)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--steps", type=int, default=None, help="override TrainConfig.steps")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--hard-negative", action="store_true", help="also train with the hard-negative loss")
    parser.add_argument("--photo-weight", type=float, default=0.0,
                        help="also train with the photo term at this weight (rows 'taskformer+photo')")
    parser.add_argument("--latency", action="store_true",
                        help="also measure query latency over 100,000 shapes and indexing throughput")
    parser.add_argument("--photo-size", type=int, default=0,
                        help="also cut new photos of the test shapes rendered at this size (diagnostic: resolution)")
    parser.add_argument("--no-train", action="store_true", help="only the zero-shot and photo rows (no training)")
    parser.add_argument("--points", nargs="?", const="shipped", default=None, metavar="CHECKPOINT",
                        help="also the point-cloud descriptor's rows (default encoder: the shipped one)")
    parser.add_argument("--points-steps", type=int, default=300, help="fine-tuning steps of each point variant")
    parser.add_argument("--points-sheet", type=Path, default=None, metavar="PNG",
                        help="with --points: a contact sheet of text searches in the views and points indexes")
    parser.add_argument("--data", type=Path, default=None, help="dataset folder (default: the cache)")
    parser.add_argument("--report", default=str(ROOT / "benchmarks" / "results" / "retrieval_bench.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    folder, write_seconds, cached = dataset(args.shapes, args.data)
    train_split, test_split = load_split(folder, "train"), load_split(folder, "test")
    print(f"retrieval_bench: world {folder} ({'cached' if cached else f'written in {write_seconds:.1f} s'}): "
          f"{len(train_split)} train / {len(test_split)} test shapes, {DATA['size']} px; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)", flush=True)
    clip = load_clip("domain")
    t0 = time.perf_counter()
    test_lines = cached_index_lines(test_split)
    composition, composition_seconds, composition_cached = composition_set(CompositionConfig())
    print(f"index line drawings of the test shapes {tuple(test_lines.shape)} and the composition set "
          f"({len(composition.roles)} gallery shapes, {len(composition.texts)} targets; "
          f"{'cached' if composition_cached else f'built in {composition_seconds:.1f} s'}) in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)

    t0 = time.perf_counter()
    zero = evaluate(ZeroShot(clip), test_split, index_lines=test_lines)
    zero_composition = evaluate_composition(ZeroShot(clip), composition)
    eval_seconds = time.perf_counter() - t0
    print(f"zero-shot evaluated in {eval_seconds:.1f} s: gallery {zero.gallery}, queries {zero.queries}", flush=True)

    t0 = time.perf_counter()
    gallery = protocol_gallery(clip, test_split)
    photo = photo_rows(clip, test_split, gallery, dataset_photos(test_split))
    photo["seconds_all"] = round(time.perf_counter() - t0, 1)
    print_photo_rows(photo, zero.chance, f"photo rows (zero-shot, the dataset's {photo['queries']} test photos, "
                                         f"{DATA['size']} px, {zero.gallery} gallery shapes) in "
                                         f"{photo['seconds_all']:.1f} s")
    if args.photo_size:
        t0 = time.perf_counter()
        bigger = photo_rows(clip, test_split, gallery, rendered_photos(test_split, args.photo_size, DATA["photos"]))
        bigger["seconds_all"] = round(time.perf_counter() - t0, 1)
        photo["rendered"] = bigger
        print_photo_rows(bigger, zero.chance, f"diagnostic: {bigger['queries']} new photos of the test shapes at "
                                              f"{args.photo_size} px (same gallery) in {bigger['seconds_all']:.1f} s")

    points = None
    if args.points:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import retrieval_points

        points = retrieval_points.run(clip, train_split, test_split, dataset_photos(test_split), gallery,
                                      None if args.points == "shipped" else Path(args.points), args.points_steps,
                                      args.points_sheet)

    base = TrainConfig(threads=args.threads)
    if args.steps is not None:
        base = replace(base, steps=args.steps)
    variants = {"taskformer": replace(base, photo_weight=0.0)}
    if args.photo_weight > 0:
        variants["taskformer+photo"] = replace(base, photo_weight=args.photo_weight)
    if args.hard_negative:
        variants["taskformer+hcl"] = replace(base, hard_negative=True)
    trained: dict[str, dict] = {}
    if args.no_train:
        variants = {}
    crops = None
    if any(config.photo_weight > 0 for config in variants.values()):
        from backend.retrieve.photo_crops import cached_photo_crops

        t0 = time.perf_counter()
        crops = cached_photo_crops(train_split)
        print(f"train photos cut out by saliency (cached): {tuple(crops.shape)} in {time.perf_counter() - t0:.1f} s",
              flush=True)
    for name, config in variants.items():
        runs = []
        for seed in args.seeds:
            result = train(train_split, replace(config, seed=seed), clip,
                           photo_crops=crops if config.photo_weight > 0 else None)
            evaluation = evaluate(result.model, test_split, index_lines=test_lines)
            composed = evaluate_composition(result.model, composition)
            # As search_photo with the checkpoint: the fine-tuned CLIP cuts (a prompt's relevance map), the
            # model's photo encoder embeds, the gallery is its image tower's.
            tuned, embed = result.model.clip, result.model.encode_photo
            with torch.no_grad():
                gallery_tuned = protocol_gallery(tuned, test_split)
                trained_photo = photo_rows(tuned, test_split, gallery_tuned, dataset_photos(test_split), embed=embed)
                if args.photo_size:
                    trained_photo["rendered"] = photo_rows(tuned, test_split, gallery_tuned, embed=embed, photos=
                                                           rendered_photos(test_split, args.photo_size, DATA["photos"]))
            runs.append({"seed": seed, "seconds": round(result.seconds, 1),
                         "seconds_per_step": round(result.seconds / result.steps, 4),
                         "under_budget": result.seconds < BUDGET_S, "loss_first": result.losses[0],
                         "loss_last": result.losses[-1], "recall": evaluation.recall,
                         "mean_rank": evaluation.mean_rank, "sketch_text_beats_both_r1": beats(evaluation.recall),
                         "composition": composed, "composition_answer": composition_answer(composed),
                         "photo_cuts": trained_photo})
            r = evaluation.recall
            cuts = " ".join(f"{row} {trained_photo[row]['recall']['r1']:.3f}" for row in PHOTO_ROWS)
            if args.photo_size:
                cuts += f"; {args.photo_size} px: " + " ".join(
                    f"{row} {trained_photo['rendered'][row]['recall']['r1']:.3f}" for row in PHOTO_ROWS)
            c = composed
            print(f"{name} seed {seed}: {result.seconds:.1f} s ({result.steps} steps); R@1 sketch "
                  f"{r['sketch']['r1']:.3f} (vs views {r[SKETCH_VS_VIEWS]['r1']:.3f}) text {r['text']['r1']:.3f} sketch+text {r['sketch+text']['r1']:.3f} "
                  f"photo {r['photo']['r1']:.3f}; photo cuts R@1 {cuts}; composition R@1 sketch "
                  f"{c['sketch']['r1']:.3f} text {c['text']['r1']:.3f} sketch+text {c['sketch+text']['r1']:.3f}",
                  flush=True)
        trained[name] = {"config": config.to_dict(), "trainable": result.trainable, "parameters": result.parameters,
                         "runs": runs, "recall": summarise([run["recall"] for run in runs]),
                         "composition": summarise([run["composition"] for run in runs])}

    # ----- the table
    ks = [f"r{k}" for k in KS]
    header = f"{'mode':<12} {'':<15}" + "".join(f" {'R@' + k[1:]:>15}" for k in ks)
    lines = [header, "-" * len(header)]
    for mode in (MODES[0], SKETCH_VS_VIEWS, *MODES[1:]):
        lines.append(f"{mode:<12} {'chance':<15}" + "".join(f" {zero.chance[k]:>15.3f}" for k in ks))
        lines.append(f"{'':<12} {'zero-shot':<15}" + "".join(f" {zero.recall[mode][k]:>15.3f}" for k in ks))
        for name, block in trained.items():
            cells = [f"{block['recall'][mode][k]['mean']:.3f} ± {block['recall'][mode][k]['std']:.3f}" for k in ks]
            lines.append(f"{'':<12} {name:<15}" + "".join(f" {c:>15}" for c in cells))
    print()
    print(f"Recall@K on {zero.gallery} test shapes (trained: mean ± std over seeds {args.seeds})")
    print("\n".join(lines))
    print()
    print(f"Composition protocol: {len(composition.texts)} targets, {len(composition.roles)} gallery shapes "
          f"(trained: mean ± std over seeds {args.seeds}); sketch + text must beat each alone by "
          f"{COMPOSITION_MARGIN} at R@1")
    lines = [header, "-" * len(header)]
    for mode in COMPOSITION_MODES:
        lines.append(f"{mode:<12} {'zero-shot':<15}" + "".join(f" {zero_composition[mode][k]:>15.3f}" for k in ks))
        for name, block in trained.items():
            cells = [f"{block['composition'][mode][k]['mean']:.3f} ± {block['composition'][mode][k]['std']:.3f}"
                     for k in ks]
            lines.append(f"{'':<12} {name:<15}" + "".join(f" {c:>15}" for c in cells))
    lines.append(f"{'any':<12} {'chance':<15}" + "".join(f" {zero_composition['chance'][k]:>15.3f}" for k in ks))
    print("\n".join(lines))
    composition_answers = {"zero-shot": composition_answer(zero_composition)}
    for name, block in trained.items():
        means = {m: {"r1": block["composition"][m]["r1"]["mean"]} for m in COMPOSITION_MODES}
        composition_answers[name] = {**composition_answer(means),
                                     "seeds_met": sum(run["composition_answer"]["met"] for run in block["runs"])}
    for name, a in composition_answers.items():
        print(f"  {name}: sketch + text above sketch by {a['over_sketch']:+.3f}, above text by "
              f"{a['over_text']:+.3f}: {'met' if a['met'] else 'not met'}"
              + (f" (met in {a['seeds_met']} of {len(args.seeds)} seeds)" if "seeds_met" in a else ""))
    if trained:
        print()
        print(f"photo R@1 by cut ({photo['queries']} test photos, {DATA['size']} px; trained: mean over seeds "
              f"{args.seeds})")
        print(f"{'':<17}" + "".join(f" {row:>10}" for row in PHOTO_ROWS))
        print(f"{'zero-shot':<17}" + "".join(f" {photo[row]['recall']['r1']:>10.3f}" for row in PHOTO_ROWS))
        for name, block in trained.items():
            block["photo_cuts_r1"] = {row: statistics.fmean(run["photo_cuts"][row]["recall"]["r1"]
                                                             for run in block["runs"]) for row in PHOTO_ROWS}
            print(f"{name:<17}" + "".join(f" {block['photo_cuts_r1'][row]:>10.3f}" for row in PHOTO_ROWS))

    # ----- the answer, as measured
    answers = {"zero-shot": {"beats_both_r1": beats(zero.recall),
                             "r1": {m: zero.recall[m]["r1"] for m in ("sketch", "text", "sketch+text")}}}
    for name, block in trained.items():
        means = {m: block["recall"][m]["r1"]["mean"] for m in ("sketch", "text", "sketch+text")}
        wins = sum(run["sketch_text_beats_both_r1"] for run in block["runs"])
        answers[name] = {"beats_both_r1_mean": means["sketch+text"] > max(means["sketch"], means["text"]),
                         "seeds_where_it_beats_both": wins, "seeds": len(block["runs"]), "r1_mean": means}
    print()
    print("Does sketch + text beat both sketch only and text only at R@1?")
    z = answers["zero-shot"]["r1"]
    print(f"  zero-shot: {'yes' if answers['zero-shot']['beats_both_r1'] else 'no'} "
          f"(sketch+text {z['sketch+text']:.3f}, text {z['text']:.3f}, sketch {z['sketch']:.3f})")
    for name in trained:
        a = answers[name]
        m = a["r1_mean"]
        print(f"  {name}: {'yes' if a['beats_both_r1_mean'] else 'no'} on the mean over seeds "
              f"(sketch+text {m['sketch+text']:.3f}, text {m['text']:.3f}, sketch {m['sketch']:.3f}); "
              f"in {a['seeds_where_it_beats_both']} of {a['seeds']} seeds")
    unique = label_uniqueness(test_split)
    print(f"  context: {unique:.0%} of the test shapes have a label set no other test shape has, and a manifest "
          f"caption names every label")
    slowest = max((run["seconds"] for block in trained.values() for run in block["runs"]), default=0.0)
    print(f"  slowest training run: {slowest:.1f} s (budget {BUDGET_S:.0f} s)")

    report = {
        "command": "retrieval_bench", "seconds": round(time.perf_counter() - started, 1), "device": "cpu",
        "renderer": "torch", "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "data": {**DATA, "shapes": args.shapes, "folder": str(folder),
                                                     "write_seconds": round(write_seconds, 1), "cached": cached},
        "protocol": "backend/retrieve/evaluate.py module docstring", "gallery": zero.gallery,
        "queries": zero.queries, "chance": zero.chance, "clip": clip.spec,
        "zero_shot": {"recall": zero.recall, "mean_rank": zero.mean_rank, "eval_seconds": round(eval_seconds, 1)},
        "trained": trained, "answer": answers,
        "composition": {"config": CompositionConfig().__dict__, "gallery": len(composition.roles),
                        "targets": len(composition.texts), "zero_shot": zero_composition,
                        "answer": composition_answers, "protocol": "backend/retrieve/composition.py module docstring",
                        "build_seconds": round(composition_seconds, 1), "cached": composition_cached}, "test_label_sets_unique": unique,
        "slowest_training_seconds": slowest, "budget_seconds": BUDGET_S,
        "photo_cuts": {**photo, "clip": clip.spec, "prompt_template": "a {colour} {category}",
                       "protocol": "module docstring, 5."},
    }
    if points is not None:
        report["points"] = points
    if args.latency:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from retrieval_latency import indexing_throughput, latency_benchmark, require_faiss

        require_faiss().omp_set_num_threads(args.threads)
        report["latency"] = latency = latency_benchmark()
        report["indexing"] = indexing = indexing_throughput()
        for name in ("exact", "approximate"):
            f = latency[name]
            print(f"query latency, {latency['shapes']:,} shapes, {name} ({f['type']}): p50 "
                  f"{f['latency_random']['p50_ms']:.2f} ms, p99 {f['latency_random']['p99_ms']:.2f} ms, recall@10 "
                  f"{f.get('recall_at_10_random', 1.0):.3f}")
        print(f"indexing: {indexing['shapes_per_s']} shapes/s (domain CLIP, {indexing['views']} views)")
    path = Path(args.report)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
