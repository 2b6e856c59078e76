"""Fine-tuning the shipped generator on a small library against training one from scratch, same library, same run.

    python benchmarks/generate_finetune_bench.py [--shapes 40] [--scratch-ae-steps 1500] [--scratch-flow-steps 3000]
        [--tune-ae-steps 150] [--tune-flow-steps 400] [--threads 2] [--report benchmarks/results/generate_finetune.json]

The library is `--shapes` world shapes of world seed 0 (`dataset_seeds`), which holds none of the shipped
generator's training shapes, written with captions as `atelier world` would. Both runs go through `train_generator`
(what `atelier train-generator` and `--init` run). Category accuracy: for each category in the library, `--samples`
shapes (T=0.8) for "a photo of a <category>", each classed by its nearest library shape (voxel IoU at 32^3).
The fine-tuned model must reach the from-scratch accuracy in at most a quarter of its training time.
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

from backend.generate.decode import decode_grid
from backend.generate.generate import prompt_condition
from backend.generate.generator import load_generator
from backend.generate.library import read_library
from backend.generate.shipped import SHIPPED_GENERATOR
from backend.generate.train_generator import train_generator
from backend.generate.world_train import shipped_train_config, write_world_library
from backend.models.clip import load_clip
from backend.world.dataset import dataset_seeds


def category_accuracy(path: Path, library, clip, samples: int, seed: int) -> dict:
    generator = load_generator(path)
    grids = torch.from_numpy(library.voxels.reshape(len(library.voxels), -1)).float()
    sizes = grids.sum(1)
    categories = [c or "" for c in library.categories]
    gen = torch.Generator().manual_seed(seed)
    per = {}
    for name in sorted(set(categories)):
        condition = prompt_condition(clip, f"a photo of a {name}")
        hits = []
        for z in generator.flow.sample(condition, samples, gen, temperature=0.8):
            x = torch.from_numpy(decode_grid(generator.autoencoder, z, 32).reshape(-1) > 0).float()
            inter = grids @ x
            hits.append(categories[int(torch.argmax(inter / (sizes + x.sum() - inter)))] == name)
        per[name] = float(np.mean(hits))
    return {"overall": float(statistics.fmean(per.values())), "per_category": per}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", type=int, default=40)
    parser.add_argument("--scratch-ae-steps", type=int, default=1500)
    parser.add_argument("--scratch-flow-steps", type=int, default=3000)
    parser.add_argument("--tune-ae-steps", type=int, default=150)
    parser.add_argument("--tune-flow-steps", type=int, default=400)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default=str(SHIPPED_GENERATOR))
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "atelier_generate_finetune"))
    parser.add_argument("--report", default="benchmarks/results/generate_finetune.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    library_dir = write_world_library(work / f"library_{args.shapes}", dataset_seeds(args.shapes, 0))
    library = read_library(library_dir, 32)
    shipped = load_generator(args.checkpoint)
    clip = load_clip(shipped.clip_spec)
    report = {"machine": platform.machine(), "threads": args.threads, "shapes": len(library.meshes),
              "categories": library.category_counts()}
    runs = {"from scratch": (None, args.scratch_ae_steps, args.scratch_flow_steps),
            "fine-tuned from the shipped generator": (shipped, args.tune_ae_steps, args.tune_flow_steps)}
    for label, (init, ae_steps, flow_steps) in runs.items():
        config = shipped_train_config()
        config.autoencoder_training.steps, config.flow_training.steps = ae_steps, flow_steps
        out = work / f"{'tuned' if init else 'scratch'}.pt"
        started = time.perf_counter()
        trained = train_generator(library_dir, out, clip, config, init=init)
        seconds = time.perf_counter() - started
        accuracy = category_accuracy(out, library, clip, args.samples, args.seed)
        report[label] = {"seconds": round(seconds, 1), "autoencoder_steps": ae_steps, "flow_steps": flow_steps,
                         "stage_seconds": trained.stage_seconds, "reconstruction_iou": trained.reconstruction_iou,
                         "category_accuracy": accuracy}
        print(f"{label}: {seconds:.0f} s ({ae_steps} + {flow_steps} steps), reconstruction IoU "
              f"{trained.reconstruction_iou:.3f}, category accuracy {accuracy['overall']:.3f} "
              + ", ".join(f"{k} {v:.2f}" for k, v in accuracy["per_category"].items()), flush=True)
    scratch, tuned = report["from scratch"], report["fine-tuned from the shipped generator"]
    report["time_ratio"] = round(tuned["seconds"] / scratch["seconds"], 3)
    report["reaches_scratch_accuracy"] = (tuned["category_accuracy"]["overall"]
                                          >= scratch["category_accuracy"]["overall"])
    print(f"fine-tuning took {report['time_ratio']:.2f}x the from-scratch time; reaches its accuracy: "
          f"{report['reaches_scratch_accuracy']}")
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
