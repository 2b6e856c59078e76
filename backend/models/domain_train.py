"""The domain CLIP's trainer: a small open_clip CLIP trained from scratch on the procedural world.

Training code only (`python build.py domain-clip`, tests, benchmarks): it imports the world. `load_clip("domain")`
goes through `domain.py`, which holds the architecture and reads the shipped weights.

No pretrained weights can be fetched on CI, and a random CLIP proves only plumbing, so quality checks use a
CLIP that knows the world: 64-px images, a ModifiedResNet image tower (at this budget a tiny ViT stays at
chance on shape), trained contrastively on CPU from random initialisation on (render, caption) and
(sketch, caption) pairs of world shapes.

- The weights ship in the package (`weights/domain_clip.pt`, an Atelier CLIP checkpoint with an fp16 state
  dict, about 9 MB) so tests, the demo and users without real weights get it at once; `load_clip("domain")`
  reads it through the same checkpoint loader as any Atelier checkpoint.
- `python build.py domain-clip` (this module's `main`) regenerates it: renders the training shapes once
  (cached under `$ATELIER_HOME/cache/domain_clip/`), then trains for a fixed number of steps, seeded; on the 2-core CI
  machine the whole build takes under 10 minutes.
- The loss is CLIP's symmetric InfoNCE with label-aware targets (UniCL, Yang et al. 2022): a caption is a
  positive for every image in the batch whose labels it agrees with, not only its own. Captions mention
  labels at random ("a photo of a chair", "a red object"), so in a batch of 256 many captions fit many images;
  plain InfoNCE would push those true matches apart.
- Which shapes it trains on and which are held out, its recipe and its zero-shot checks: `domain_world.py`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import math
import multiprocessing
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from backend.checkpoints import save_atomic
from backend.errors import AtelierError, InvalidInputError
from backend.models.clip import CHECKPOINT_FORMAT, ClipModel, TinyClipConfig, clip_from_config
from backend.models.domain import DOMAIN_WEIGHTS
from backend.models.domain_world import (PROMPTS, DomainClipConfig, heldout_plan, label_words, render_heldout,
                                         training_plan, zero_shot_accuracy)
from backend.models.store import atelier_home
from backend.models.training import augment, torch_threads
from backend.progress import CancelToken, ProgressFn, no_progress
from backend.train_loop import TrainLoop, run_training_loop
from backend.world.appearance import PATTERNS
from backend.world.captions import ALL, contains_phrase, make_caption
from backend.world.families import CATEGORIES, FAMILIES
from backend.world.sampling import COLOUR_NAMES, shape_images
from backend.world.shape import make_shape


# ---------------------------------------------------------------------------------------------- training data


@dataclass
class TrainingSet:
    """The rendered training shapes: uint8 images and the labels captions are drawn from."""

    renders: torch.Tensor
    """[N, R, H, W, 3] uint8 shaded renders over white."""
    sketches: torch.Tensor
    """[N, S, H, W, 3] uint8 line drawings (grey stored as RGB)."""
    seeds: list[int]
    """Shape seed per shape."""
    categories: list[str]
    """Category per shape."""
    colours: list[str]
    """Colour name per shape."""
    patterns: list[str]
    """Pattern name per shape."""
    attributes: list[dict]
    """Family attributes per shape."""

    def __len__(self) -> int:
        return len(self.seeds)

    def save(self, path: Path) -> None:
        """Writes one torch file (atomically; loadable with weights_only=True)."""
        save_atomic(asdict(self), path)

    @classmethod
    def load(cls, path: Path) -> "TrainingSet":
        """Reads a file written by `save`."""
        return cls(**torch.load(path, weights_only=True))


def _render_chunk(plan: list[tuple[int, str]], renders: int, sketches: int,
                  size: int) -> tuple[np.ndarray, np.ndarray, list]:
    """Renders shapes of `plan` in this process (the pixels depend only on the shape seed)."""
    kinds = ["render"] * renders + ["sketch"] * sketches
    out_r = np.empty((len(plan), renders, size, size, 3), dtype=np.uint8)
    out_s = np.empty((len(plan), sketches, size, size, 3), dtype=np.uint8)
    labels = []
    with torch_threads(1):
        for i, (seed, category) in enumerate(plan):
            shape = make_shape(seed, category)
            generator = torch.Generator().manual_seed(seed)  # as build_tensor_dataset does
            images = (shape_images(shape, kinds, size, generator).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
            out_r[i], out_s[i] = images[:renders], images[renders:]
            labels.append((shape.colour, shape.pattern, dict(shape.attributes)))
    return out_r, out_s, labels


def _sources_digest() -> str:
    """A digest of the world and renderer sources: the cached training set is stale when they change."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]  # backend/
    for folder in ("world", "render", "geometry"):
        for path in sorted((package / folder).glob("*.py")):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def data_cache_dir() -> Path:
    """Where `python build.py domain-clip` keeps rendered training sets between runs (~150 MB each)."""
    return atelier_home() / "cache" / "domain_clip"


def _cache_path(config: DomainClipConfig) -> Path:
    key = json.dumps({**config.data_key(), "sources": _sources_digest()}, sort_keys=True)
    return data_cache_dir() / f"world_{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


def render_training_set(config: DomainClipConfig, progress: ProgressFn = no_progress,
                        cancel: CancelToken | None = None, cache: bool = True) -> TrainingSet:
    """The "train" shapes of the plan, rendered (`config.workers` processes), or read back from the cache.

    With workers > 1 the renderers are spawned processes: a calling script needs the usual
    `if __name__ == "__main__":` guard.
    """
    path = _cache_path(config)
    if cache and path.is_file():
        return TrainingSet.load(path)
    plan, split = training_plan(config)
    train = [p for p, s in zip(plan, split) if s == "train"]
    size = config.model.image_size
    chunk = 25
    chunks = [train[i:i + chunk] for i in range(0, len(train), chunk)]
    args = (config.renders, config.sketches, size)
    results = []
    if config.workers <= 1:
        for i, part in enumerate(chunks):
            if cancel is not None:
                cancel.check()
            results.append(_render_chunk(part, *args))
            progress(min((i + 1) * chunk, len(train)), len(train))
    else:
        # spawn, not fork: forking a process whose OpenMP pool is running can hang.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(config.workers, mp_context=context) as pool:
            futures = [pool.submit(_render_chunk, part, *args) for part in chunks]
            try:
                for i, future in enumerate(futures):
                    if cancel is not None:
                        cancel.check()
                    results.append(future.result())
                    progress(min((i + 1) * chunk, len(train)), len(train))
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    labels = [label for _, _, part in results for label in part]
    data = TrainingSet(
        renders=torch.from_numpy(np.concatenate([r for r, _, _ in results])),
        sketches=torch.from_numpy(np.concatenate([s for _, s, _ in results])),
        seeds=[s for s, _ in train],
        categories=[c for _, c in train],
        colours=[c for c, _, _ in labels],
        patterns=[p for _, p, _ in labels],
        attributes=[a for _, _, a in labels],
    )
    if cache:
        data.save(path)
    return data


# ---------------------------------------------------------------------------------------------- captions and targets

ATTRIBUTE_NAMES: tuple[str, ...] = tuple(sorted({name for f in FAMILIES.values() for name in f.attributes}))
"""Every family attribute name, in a fixed order (label columns 3...)."""
_ANY = -1  # a caption column that says nothing about this label
_UNSEEN = -2  # an image column whose label cannot be seen (a sketch has no colour or pattern)
_ABSENT = -3  # an image column of an attribute its family does not have


def _image_labels(category: str, colour: str, pattern: str, attributes: dict, kind: str) -> list[int]:
    """One image's label row: [category, colour, pattern, *ATTRIBUTE_NAMES] as value indices."""
    family = FAMILIES[category]
    row = [CATEGORIES.index(category),
           COLOUR_NAMES.index(colour) if kind != "sketch" else _UNSEEN,
           PATTERNS.index(pattern) if kind != "sketch" else _UNSEEN]
    row += [family.attributes[name].index(attributes[name]) if name in family.attributes else _ABSENT
            for name in ATTRIBUTE_NAMES]
    return row


def sample_caption(category: str, colour: str, pattern: str, attributes: dict, kind: str,
                   rng: np.random.Generator, config: DomainClipConfig) -> tuple[str, list[int]]:
    """A training caption for one image and the label row it asserts (`_ANY` where it says nothing).

    With probability `prompt_fraction` a zero-shot prompt naming one label ("a photo of a chair", "a red
    object", "a striped object"), else a world caption (`make_caption`) mentioning each label with
    probability `mention_probability`. Sketch captions never name a colour or a pattern.
    """
    family = FAMILIES[category]
    facts = [_ANY] * (3 + len(ATTRIBUTE_NAMES))
    if rng.random() < config.prompt_fraction:
        tasks = ("category",) if kind == "sketch" else ("category", "colour", "pattern")
        task = tasks[int(rng.integers(len(tasks)))]
        column = ("category", "colour", "pattern").index(task)
        value = {"category": CATEGORIES.index(category), "colour": COLOUR_NAMES.index(colour),
                 "pattern": PATTERNS.index(pattern)}[task]
        facts[column] = value
        return PROMPTS[task].format(label_words(task)[value]), facts
    names = list(ALL) + list(family.attributes)
    draws = rng.random(len(names))
    mention = [n for n, d in zip(names, draws) if d < config.mention_probability]
    if kind == "sketch":
        mention = [n for n in mention if n not in ALL]
    caption = make_caption(category, colour, pattern, attributes, rng, mention)
    facts[0] = CATEGORIES.index(category)
    if "colour" in mention:
        facts[1] = COLOUR_NAMES.index(colour)
    if "pattern" in mention and (pattern != "plain" or contains_phrase(caption, "plain")):
        facts[2] = PATTERNS.index(pattern)
    for name in mention:
        if name in family.attributes:
            facts[3 + ATTRIBUTE_NAMES.index(name)] = family.attributes[name].index(attributes[name])
    return caption, facts


def agreement(image_labels: torch.Tensor, caption_facts: torch.Tensor) -> torch.Tensor:
    """[B, L] image label rows, [T, L] caption fact rows -> [B, T] bool: caption t is true of image b."""
    facts = caption_facts[None]
    return ((facts == _ANY) | (facts == image_labels[:, None])).all(dim=-1)


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor,
                     positives: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with several positives (UniCL): each row's target spreads evenly over its positives.

    image_emb, text_emb: [B, D] unit vectors; positives: [B, B] bool with a true diagonal.
    """
    logits = logit_scale * image_emb @ text_emb.T
    target = positives.float()
    to_text = -(target / target.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    to_image = -(target / target.sum(0, keepdim=True) * F.log_softmax(logits, dim=0)).sum(0).mean()
    return 0.5 * (to_text + to_image)


# ---------------------------------------------------------------------------------------------- training


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        # open_clip's rule: no decay on gains, biases, embeddings and the temperature.
        if param.ndim < 2 or "embedding" in name or "logit_scale" in name or "bn" in name or "ln" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_at(step: int, config: DomainClipConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    t = (step - config.warmup) / max(1, config.steps - config.warmup)
    low = config.lr * config.min_lr_fraction
    return low + 0.5 * (config.lr - low) * (1 + math.cos(math.pi * t))


def train_domain_clip(config: DomainClipConfig, data: TrainingSet, progress: ProgressFn = no_progress,
                      cancel: CancelToken | None = None, name: str = "domain") -> ClipModel:
    """Trains a CLIP of `config.model` from its seeded random init on `data`; returns it in eval mode.

    Deterministic for a fixed `config` (and thread count). Calls progress(step, steps, loss=..., lr=...,
    temperature=...) after each step and checks `cancel` before each.
    """
    if len(data) < 2:
        raise InvalidInputError("the domain CLIP needs at least two training shapes", hint="raise `shapes`")
    with torch_threads(config.threads):
        return _train(config, data, progress, cancel, name)


def _train(config: DomainClipConfig, data: TrainingSet, progress: ProgressFn, cancel: CancelToken | None,
           name: str) -> ClipModel:
    clip = clip_from_config(config.model.model_cfg(), name=name, seed=config.model.seed)
    # channels_last: oneDNN's CPU convolutions run ~1.6x faster on it (measured, 1 thread, batch 256).
    model = clip.model.to(memory_format=torch.channels_last).train().requires_grad_(True)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1 / config.init_temperature))
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.98),
                                  eps=1e-6)
    # Items: (shape, kind, view) for every stored image; an epoch is one seeded permutation of them.
    n, renders, sketches = len(data), data.renders.shape[1], data.sketches.shape[1]
    items = torch.tensor([(s, 0, v) for s in range(n) for v in range(renders)]
                         + [(s, 1, v) for s in range(n) for v in range(sketches)], dtype=torch.int64)
    label_rows = {kind: torch.tensor([_image_labels(data.categories[s], data.colours[s], data.patterns[s],
                                                    data.attributes[s], kind) for s in range(n)])
                  for kind in ("render", "sketch")}
    generator = torch.Generator().manual_seed(config.seed)
    state = {"order": torch.randperm(len(items), generator=generator), "cursor": 0}
    batch = min(config.batch, len(items))

    def loss_at(step: int) -> torch.Tensor:
        if state["cursor"] + batch > len(state["order"]):
            state["order"], state["cursor"] = torch.randperm(len(items), generator=generator), 0
        picked = items[state["order"][state["cursor"]:state["cursor"] + batch]]
        state["cursor"] += batch
        shape, is_sketch, view = picked.unbind(1)
        sketch = is_sketch.bool()
        images = torch.empty((batch, *data.renders.shape[2:]), dtype=torch.uint8)
        images[~sketch] = data.renders[shape[~sketch], view[~sketch]]
        images[sketch] = data.sketches[shape[sketch], view[sketch]]
        images = images.permute(0, 3, 1, 2).float().div_(255)
        images = augment(images, generator, config.crop_scale, config.flip)
        images = images.contiguous(memory_format=torch.channels_last)
        rng = np.random.default_rng([config.seed, step])
        captions, facts = [], []
        for s, k in zip(shape.tolist(), sketch.tolist()):
            caption, fact = sample_caption(data.categories[s], data.colours[s], data.patterns[s],
                                           data.attributes[s], "sketch" if k else "render", rng, config)
            captions.append(caption)
            facts.append(fact)
        rows = torch.where(sketch[:, None], label_rows["sketch"][shape], label_rows["render"][shape])
        positives = agreement(rows, torch.tensor(facts))
        image_emb = model.encode_image(clip.preprocess(images), normalize=True)
        text_emb = model.encode_text(clip.tokenizer(captions), normalize=True)
        return contrastive_loss(image_emb, text_emb, model.logit_scale.exp(), positives)

    def clamp_scale() -> dict[str, float]:
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(config.max_logit_scale))
        return {"temperature": math.exp(-model.logit_scale.item())}

    run_training_loop(optimizer, loss_at, TrainLoop(steps=config.steps, lr_at=lambda step, group: _lr_at(step, config),
                                                    after_step=clamp_scale, report_lr=True),
                      progress=progress, cancel=cancel)
    model.to(memory_format=torch.contiguous_format).eval().requires_grad_(False)
    return clip


# ---------------------------------------------------------------------------------------------- the checkpoint


def save_domain_checkpoint(clip: ClipModel, path: str | os.PathLike, config: DomainClipConfig,
                           training: dict | None = None) -> Path:
    """Writes `clip` as an Atelier CLIP checkpoint (see `save_clip_checkpoint`) with an fp16 state dict,
    plus a "training" entry: the config and what the run measured. Loads with `load_clip(path)`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
             for k, v in clip.model.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_cfg": json.loads(json.dumps(clip.model_cfg)),
        "state_dict": state,
        "image_size": int(clip.image_size),
        "mean": [float(v) for v in clip.mean],
        "std": [float(v) for v in clip.std],
        "spec_name": clip.name,
        "training": json.loads(json.dumps({"config": asdict(config), **(training or {})})),
    }
    return save_atomic(payload, path)


def checkpoint_training(path: str | os.PathLike = DOMAIN_WEIGHTS) -> dict:
    """The "training" entry of a domain checkpoint: {"config": ..., "seconds": ..., "heldout": ...}."""
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    return ckpt.get("training", {})


def config_from_checkpoint(path: str | os.PathLike = DOMAIN_WEIGHTS) -> DomainClipConfig:
    """The DomainClipConfig a domain checkpoint was trained with (so held-out shapes follow the file)."""
    raw = dict(checkpoint_training(path)["config"])
    model = raw.pop("model")
    model["vision_layers"] = tuple(model["vision_layers"]) if isinstance(model["vision_layers"], list) \
        else model["vision_layers"]
    raw["crop_scale"] = tuple(raw["crop_scale"])
    return DomainClipConfig(model=TinyClipConfig(**model), **raw)


# ---------------------------------------------------------------------------------------------- build.py domain-clip


def _evaluate(clip: ClipModel, count: int, config: DomainClipConfig) -> dict:
    held = render_heldout(heldout_plan(count, config), ("render", "sketch"), config.model.image_size)
    accuracy = {task: zero_shot_accuracy(clip, held, task) for task in PROMPTS}
    accuracy["sketch_category"] = zero_shot_accuracy(clip, held, "category", "sketch")
    return {"shapes": len(held.captions), "accuracy": accuracy}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python build.py domain-clip",
                                     description="Train the domain CLIP on the procedural world (CPU, seeded).")
    parser.add_argument("--out", type=Path, default=DOMAIN_WEIGHTS, help="checkpoint to write")
    parser.add_argument("--steps", type=int, default=None, help="override the number of training steps")
    parser.add_argument("--shapes", type=int, default=None, help="override the number of world shapes")
    parser.add_argument("--no-cache", action="store_true", help="render the training set even when it is cached")
    parser.add_argument("--eval-shapes", type=int, default=200,
                        help="held-out shapes to check after training (0: skip)")
    parser.add_argument("--report", type=Path, default=None, help="write a JSON report here")
    args = parser.parse_args(argv)
    config = DomainClipConfig()
    if args.steps is not None:
        config = replace(config, steps=args.steps)
    if args.shapes is not None:
        config = replace(config, shapes=args.shapes)
    started = time.perf_counter()

    def bar(label: str):
        clock = time.perf_counter()

        def show(step: int, total: int, **metrics: float) -> None:
            if step == total or step % max(1, total // 20) == 0:
                extra = " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
                print(f"[domain-clip] {label} {step}/{total} {time.perf_counter() - clock:6.1f}s {extra}", flush=True)
        return show

    try:
        cached = _cache_path(config).is_file() and not args.no_cache
        print(f"[domain-clip] training set: {'cached' if cached else 'rendering'} {_cache_path(config)}", flush=True)
        data = render_training_set(config, progress=bar("render"), cache=not args.no_cache)
        data_seconds = time.perf_counter() - started
        clip = train_domain_clip(config, data, progress=bar("train"))
        train_seconds = time.perf_counter() - started - data_seconds
        training = {"seconds": {"data": round(data_seconds, 1), "train": round(train_seconds, 1)},
                    "train_shapes": len(data), "torch": torch.__version__}
        if args.eval_shapes:
            training["heldout"] = _evaluate(clip, args.eval_shapes, config)
        path = save_domain_checkpoint(clip, args.out, config, training)
    except AtelierError as exc:
        print(f"[domain-clip] error: {exc}", file=sys.stderr)
        return 1
    report = {"command": "domain-clip", "out": str(path), "bytes": path.stat().st_size,
              "seconds": round(time.perf_counter() - started, 1), **training}
    print(json.dumps(report, indent=1))
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    # Run the package's copy of this module, so worker processes unpickle its functions by their real name.
    from backend.models.domain_train import main as _main

    sys.exit(_main())
