"""The shipped generator's recipe: `python build.py generator` trains it on the procedural world with the domain
CLIP, seeded, into `backend/models/weights/generator_domain.pt` (the Generate panel's and `atelier generate`'s
default).

Its library is the domain CLIP's training shapes (`backend.models.domain_world.training_plan`, "train" split), written
once as GLB files in category folders with `categories.json` and `captions.json` (each shape's world caption and
shorter ones that leave out the colour, pattern or attributes), so it trains through the same `train_generator` a
user's library does. The domain CLIP's held-out shapes are never written: the benchmark measures on them.

Training code (build.py, benchmarks, tests): it imports the world.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from backend.generate.flow import FlowConfig
from backend.generate.occupancy import OccupancyAutoencoderConfig
from backend.generate.train_autoencoder import AutoencoderTrainConfig
from backend.generate.train_flow import FlowTrainConfig
from backend.generate.shipped import SHIPPED_GENERATOR
from backend.generate.train_generator import GeneratorTrainConfig, train_generator
from backend.progress import ProgressFn, no_progress



def shipped_train_config() -> GeneratorTrainConfig:
    """The shipped generator's models and training (measured choices: benchmarks/README.md, generation)."""
    return GeneratorTrainConfig(
        autoencoder=OccupancyAutoencoderConfig(),
        autoencoder_training=AutoencoderTrainConfig(steps=3000, batch_size=32, points_per_shape=1024,
                                                    learning_rate=2e-3, seed=0),
        flow=FlowConfig(hidden=256, coupling_layers=5, mean_hidden=512),
        flow_training=FlowTrainConfig(steps=6000, batch_size=64, learning_rate=5e-4, text_fraction=0.3, seed=0),
        views=6)


@dataclass
class WorldGeneratorConfig:
    """What the shipped generator learns from and how."""

    shapes: int = 0
    """Train on the first this many of the domain CLIP's training shapes (0: all 2400)."""
    captions_per_shape: int = 3
    """World captions written per shape: the full one, one without colour and pattern, one naming only the shape's
    attributes at random (each leaves less to the text, so short prompts land on the shapes they describe)."""
    train: GeneratorTrainConfig = field(default_factory=shipped_train_config)


def world_library_plan(shapes: int = 0) -> list[tuple[int, str]]:
    """(world seed, category) of the shapes the shipped generator trains on, in a fixed order."""
    from backend.models.domain_world import training_plan

    plan, split = training_plan()
    chosen = [p for p, s in zip(plan, split) if s == "train"]
    return chosen[:shapes] if shapes > 0 else chosen


def shape_captions(shape, count: int, rng: np.random.Generator) -> list[str]:
    """`count` captions of a world shape: its own, then ones that mention less (see `WorldGeneratorConfig`)."""
    from backend.world.captions import make_caption

    attributes = sorted(shape.attributes)
    mentions = [None, attributes]
    while len(mentions) < count:
        keep = [a for a in attributes if rng.random() < 0.5]
        mentions.append(keep)
    return [shape.caption] + [make_caption(shape.category, shape.colour, shape.pattern, shape.attributes, rng,
                                           mention=m) for m in mentions[1:count]]


def write_world_library(root: str | Path, plan: Sequence[tuple[int, str]], captions_per_shape: int = 3,
                        progress: ProgressFn = no_progress) -> Path:
    """Writes the shapes of `plan` as root/<category>/<category>_<k>.glb with categories.json and captions.json per
    folder. Files already there are kept (the world is deterministic), so a second run only checks them."""
    from backend.geometry.glb import export_glb
    from backend.world.shape import make_shape

    root = Path(root)
    captions: dict[str, dict[str, list[str]]] = {}
    for index, (seed, category) in enumerate(plan):
        folder = root / category
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{category}_{index:04d}.glb"
        shape = make_shape(seed, category)
        if not (folder / name).exists():
            export_glb(shape.mesh, folder / name, name=Path(name).stem)
        rng = np.random.default_rng([seed, 7])
        captions.setdefault(category, {})[name] = shape_captions(shape, captions_per_shape, rng)
        progress(index + 1, len(plan))
    for category, entries in captions.items():
        (root / category / "captions.json").write_text(json.dumps(entries, indent=1, sort_keys=True))
    return root


def train_world_generator(out: str | Path, work: str | Path, config: WorldGeneratorConfig | None = None,
                          device: str = "cpu", resume: bool = True, progress=no_progress):
    """Writes the world library under `work` and trains the generator into `out`: the `train_generator` report.
    With `resume`, the stages an interrupted run finished (OUT.parts/) are picked up."""
    from backend.models.clip import load_clip

    config = config or WorldGeneratorConfig()
    plan = world_library_plan(config.shapes)
    library = write_world_library(Path(work) / f"library_{len(plan)}", plan, config.captions_per_shape,
                                  lambda done, total: progress(done, total, stage="world"))
    clip = load_clip("domain", device)
    return train_generator(library, out, clip, config.train, device=device, resume=resume, progress=progress)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="train the shipped generator on the procedural world")
    parser.add_argument("--out", default=str(SHIPPED_GENERATOR))
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "atelier" / "world_generator"),
                        help="where the world library is written (kept: a rerun reuses it)")
    parser.add_argument("--shapes", type=int, default=0, help="train on the first N world shapes (0: all)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--fresh", action="store_true",
                        help="start over instead of picking up the stages an interrupted run finished (OUT.parts/)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = WorldGeneratorConfig(shapes=args.shapes)
    started = time.perf_counter()
    last = {"stage": None, "t": 0.0}

    def progress(step: int, total: int, stage: str = "", **metrics) -> None:
        now = time.perf_counter()
        if stage != last["stage"] or step == total or now - last["t"] > 15:
            loss = f" loss {metrics['loss']:.4f}" if "loss" in metrics else ""
            print(f"[generator] {stage} {step}/{total}{loss} ({now - started:.0f} s)", flush=True)
            last.update(stage=stage, t=now)

    report = train_world_generator(args.out, args.work, config, resume=not args.fresh, progress=progress)
    seconds = time.perf_counter() - started
    print(f"[generator] wrote {args.out} in {seconds:.0f} s: {report.shapes} shapes, reconstruction IoU "
          f"{report.reconstruction_iou:.3f}, stages {report.stage_seconds}", flush=True)
    Path(str(args.out) + ".json").write_text(json.dumps(
        {"seconds": round(seconds, 1), "threads": torch.get_num_threads(), "config": asdict(config),
         "report": report.as_dict()}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
