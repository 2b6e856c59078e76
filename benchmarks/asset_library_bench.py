"""Blender asset library indexing: assets per second extracted from .blend files with 1 worker and with all,
and indexing throughput end to end, in one run.

    python benchmarks/asset_library_bench.py [--copies 4] [--workers N] [--report FILE]

1. A real asset library built with the bpy module (tests/assets/asset_library.py: the test library's three
   .blend files of 24 asset-marked objects and collections, with materials, modifiers and previews), copied
   `copies` times into separate folders so there are enough files to spread over workers.
2. Extraction alone (`BlenderPool`: open each .blend, export every asset to GLB with its metadata and preview):
   assets/s with 1 worker and with `workers` (default: every core). Workers are started before the clock
   (about 1 s each to import bpy), so the figures are steady-state throughput; the start-up is reported apart.
3. End to end (`index_library` with the domain CLIP and all workers: extract, load, render 6 views + 6 line
   drawings, embed, commit per file): assets/s wall, and a second run over the unchanged library (every
   file skipped by its size and modification time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.geometry.blender_pool import BlenderConfig, BlenderPool, find_blender  # noqa: E402
from tests.assets.asset_library import build_asset_library  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "asset_library_bench.json"


def bpy_python() -> Path:
    override = os.environ.get("ATELIER_BLENDER_PYTHON")
    return Path(override) if override else ROOT / ".venv-blender" / "bin" / "python"


def make_library(root: Path, copies: int) -> tuple[Path, int, int]:
    """(library folder, .blend files, marked assets): the test library's .blend files, `copies` times."""
    built = build_asset_library(root / "built", bpy_python())
    blends = sorted({key[0] for key in built.assets})
    library = root / "library"
    for copy in range(copies):
        for relpath in blends:
            target = library / f"copy{copy}" / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(built.root / relpath, target)
    shutil.copyfile(built.root / "blender_assets.cats.txt", library / "blender_assets.cats.txt")
    return library, len(blends) * copies, len(built.assets) * copies


def extraction(library: Path, workers: int) -> dict:
    files = sorted(library.rglob("*.blend"))
    out = Path(tempfile.mkdtemp(prefix="atelier-extract-"))
    try:
        with BlenderPool(BlenderConfig(workers=workers, timeout_s=600)) as pool:
            tick = time.perf_counter()
            pool.start(min(workers, len(files)))
            start_seconds = time.perf_counter() - tick
            tick = time.perf_counter()
            results = list(pool.extract(files, out))
            seconds = time.perf_counter() - tick
        assets = sum(len(r.assets) for r in results)
        failed = [r.path.name for r in results if r.error]
        return {"workers": workers, "files": len(files), "assets": assets, "failed": failed,
                "seconds": round(seconds, 2), "assets_per_s": round(assets / seconds, 2),
                "start_seconds": round(start_seconds, 2)}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def end_to_end(library: Path, workers: int) -> dict:
    from backend.models.clip import load_clip
    from backend.retrieve.indexer import IndexConfig, index_library
    from backend.retrieve.query import QueryEncoder

    db = Path(tempfile.mkdtemp(prefix="atelier-assetdb-"))
    try:
        encoder = QueryEncoder(load_clip("domain"))
        config = IndexConfig(workers=workers)
        tick = time.perf_counter()
        first = index_library(library, db, encoder, config)
        wall = time.perf_counter() - tick
        tick = time.perf_counter()
        second = index_library(library, db, encoder, config)
        rerun = time.perf_counter() - tick
        return {"workers": workers, "clip": "domain", "views": config.views.views, "shapes": first.shapes,
                "failed": len(first.failed), "seconds": round(wall, 2),
                "wall_assets_per_s": round(first.indexed / wall, 2),
                "render_embed_assets_per_s": round(first.shapes_per_s, 2),
                "unchanged_rerun_seconds": round(rerun, 2), "unchanged_rerun_skipped": second.skipped}
    finally:
        shutil.rmtree(db, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=4, help="copies of the test library's .blend files")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="workers of the 'all' run")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of the indexing process")
    parser.add_argument("--report", default=str(RESULTS), help="write the JSON results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if find_blender() is None:
        sys.exit("no Blender found: run `python build.py setup` (makes .venv-blender) or set ATELIER_BLENDER")
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="atelier-assetlib-bench-"))
    try:
        library, blends, assets = make_library(root, args.copies)
        one = extraction(library, 1)
        many = extraction(library, args.workers)
        indexing = end_to_end(library, args.workers)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results = {"benchmark": "asset_library", "blend_files": blends, "marked_assets": assets,
               "extraction": {"one_worker": one, "all_workers": many,
                              "speedup": round(many["assets_per_s"] / one["assets_per_s"], 2)},
               "indexing": indexing,
               "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                           "processor": platform.processor() or platform.machine(), "gpu": "not measured"},
               "seconds": round(time.perf_counter() - started, 1)}
    print(f"asset_library: {blends} .blend files, {assets} marked assets (objects and collections), "
          f"{os.cpu_count()} CPU(s)")
    header = f"{'extraction':<22} {'files':>6} {'assets':>7} {'seconds':>8} {'assets/s':>9} {'start s':>8}"
    print(header)
    print("-" * len(header))
    for name, row in (("1 worker", one), (f"{many['workers']} workers", many)):
        print(f"{name:<22} {row['files']:>6} {row['assets']:>7} {row['seconds']:>8.2f} {row['assets_per_s']:>9.2f} "
              f"{row['start_seconds']:>8.2f}")
    print(f"speedup with {many['workers']} workers: {results['extraction']['speedup']}x")
    print(f"end to end ({indexing['workers']} workers, domain CLIP, {indexing['views']} views): {indexing['shapes']} "
          f"assets in {indexing['seconds']} s = {indexing['wall_assets_per_s']} assets/s wall "
          f"(render + embed {indexing['render_embed_assets_per_s']} assets/s); unchanged re-run "
          f"{indexing['unchanged_rerun_seconds']} s ({indexing['unchanged_rerun_skipped']} files skipped)")
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
