"""What the domain CLIP knows about the procedural world, beside chance and the random `tiny` CLIPs, in one run.

    python benchmarks/world_clip_bench.py [--shapes N] [--threads 1] [--report FILE]

On held-out world shapes (the "test" split of the domain CLIP's training plan: shapes it never saw, rendered
from new viewpoints), for each model:
- zero-shot accuracy by prompt: category ("a photo of a {category}"), colour ("a {colour} object") and pattern
  ("a {striped|checked|dotted|plain} object") on shaded renders, and category on line sketches;
- text-to-image retrieval: each shape's full caption against one render per held-out shape, Recall@1 and @5.
Targets (issue 3): the domain CLIP >= 0.8 on category and colour (chance 1/8); the random models near chance.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from backend.models import load_clip
from backend.models.domain import DOMAIN_WEIGHTS
from backend.models.domain_train import config_from_checkpoint
from backend.models.domain_world import PROMPTS, heldout_plan, label_words, render_heldout, zero_shot_accuracy

MODELS = ("domain", "tiny", "tiny-rn")
"""The trained domain CLIP and the seeded random tiny CLIPs (ViT and ModifiedResNet towers)."""


@torch.no_grad()
def recall_at(clip, captions: list[str], images: torch.Tensor, ks=(1, 5)) -> dict[str, float]:
    """Text-to-image Recall@K: caption i's own image (row i) among the K best-scored images."""
    text = torch.cat([clip.encode_text(captions[i:i + 256]) for i in range(0, len(captions), 256)])
    image = torch.cat([clip.encode_image(images[i:i + 256]) for i in range(0, len(images), 256)])
    scores = text @ image.T
    rank = (scores > scores.diagonal()[:, None]).sum(1)  # images scored above the right one
    return {f"r{k}": float((rank < k).float().mean()) for k in ks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", type=int, default=None, help="held-out shapes to use (default: all of them)")
    parser.add_argument("--report", default=None, help="write the JSON results here")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (one: small kernels, and robust on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    config = config_from_checkpoint(DOMAIN_WEIGHTS)
    plan = heldout_plan(args.shapes, config)
    size = config.model.image_size
    held = render_heldout(plan, ("render", "sketch"), size)
    render_seconds = time.perf_counter() - started

    chance = {task: 1 / len(label_words(task)) for task in PROMPTS}
    chance_recall = {"r1": 1 / len(plan), "r5": min(1.0, 5 / len(plan))}
    models = {}
    for name in MODELS:
        clip = load_clip(name)
        accuracy = {task: zero_shot_accuracy(clip, held, task) for task in PROMPTS}
        sketch = zero_shot_accuracy(clip, held, "category", "sketch")
        models[name] = {"spec": clip.spec, "tower": clip.tower,
                        "parameters": sum(p.numel() for p in clip.model.parameters()),
                        "accuracy": accuracy, "sketch_accuracy": {"category": sketch},
                        "recall": recall_at(clip, held.captions, held.images["render"])}

    print(f"world_clip_bench: {len(plan)} held-out shapes (seeds the domain CLIP never saw), {size} px, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; rendering took {render_seconds:.1f} s")
    header = (f"{'model':<8} {'category':>9} {'colour':>7} {'pattern':>8} {'sketch cat':>11} "
              f"{'T2I R@1':>8} {'T2I R@5':>8}")
    print(header)
    print("-" * len(header))
    print(f"{'chance':<8} {chance['category']:>9.3f} {chance['colour']:>7.3f} {chance['pattern']:>8.3f} "
          f"{chance['category']:>11.3f} {chance_recall['r1']:>8.3f} {chance_recall['r5']:>8.3f}")
    for name, m in models.items():
        a, r = m["accuracy"], m["recall"]
        print(f"{name:<8} {a['category']:>9.3f} {a['colour']:>7.3f} {a['pattern']:>8.3f} "
              f"{m['sketch_accuracy']['category']:>11.3f} {r['r1']:>8.3f} {r['r5']:>8.3f}")
    domain = models["domain"]["accuracy"]
    targets = {"domain_category_ge_0.8": domain["category"] >= 0.8, "domain_colour_ge_0.8": domain["colour"] >= 0.8}
    print("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in targets.items()))

    result = {
        "command": "world_clip_bench", "seconds": round(time.perf_counter() - started, 1), "device": "cpu",
        "renderer": "torch", "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "shapes": len(plan), "image_size": size,
        "prompts": dict(PROMPTS), "chance": {"accuracy": chance, "recall": chance_recall},
        "models": models, "targets": targets,
    }
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
