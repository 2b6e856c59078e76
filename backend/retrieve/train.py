"""Training TASK-former on (image, sketch, caption) triples of a world dataset's train split.

Each step takes a batch of distinct train shapes (an epoch is a seeded permutation of them) and, per shape,
one of its shaded views, one of its sketches (drawn independently) and its caption, which with probability
`caption_redraw` is replaced by a paraphrase (the same labels in another caption template). Images and
sketches get random crops and mirroring. The loss is

    100 * (L_e(image, sketch + text query) + photo_weight * L_e(image, photo) + lines_weight * L_e(lines, sketch))
        + 10 * L_c(class head on image, sketch, text) + 1 * L_d(caption)

with L_e the symmetric InfoNCE, or with `hard_negative` the loss of Robinson et al. (`losses.py`). The photo
term (issue 20; IBSR, the seed paper on image-based shape retrieval, aligns photos with shapes the same way):
one of the shape's world photos (clutter, lighting, occlusion), cut out by saliency as `search --image` cuts a
photo (`photo_crops`), through the photo tower (a copy of the image tower, `photo_tower`), against the shape's
view through the image tower, the view embedding and the temperature held fixed (detached) in that term, so it
trains the photo tower alone: with it, sketch and text training is that of a run without photos (measured
before the detaching: text R@1 fell from 0.913 to 0.838). Off when `photo_weight` is 0.

The sketch side (issue 20): a search frames a user's sketch and scores it against the index's clean line drawings
of each shape through the sketch encoder (`QueryEncoder.target_kind`), so training frames the sketches the same
way (`frame_sketches`) and adds the lines term: the shape's sketch against one of its index line drawings (from
the index's fixed cameras, `sketch_domain.cached_index_lines`), both through the sketch encoder. The sketches
are varied as sketch retrieval work varies them: 12 more per shape drawn from new viewpoints (`extra_sketches`)
and, at every step, strokes thickened or thinned, patches erased and a hand-jitter warp (`sketch_augment`).
Measured (retrieval_bench, 80 test shapes, one seed): sketch R@1 against line drawings 0.472 zero-shot, 0.484
trained without these, 0.503 with the lines term and stroke augmentation, 0.522 with the 12 drawn sketches too.

Everything random in a step (batch, views, captions, augmentation) is drawn from generators seeded by
(seed, epoch) and (seed, step), and the CLIP towers keep BatchNorm in eval mode, so a run resumed from a
checkpoint continues exactly as the uninterrupted run would (same thread count and device).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.errors import InvalidInputError
from backend.models.clip import ClipModel
from backend.models.training import augment, torch_threads
from backend.progress import CancelToken, ProgressFn, no_progress
from backend.retrieve.data import RetrievalSplit, to_float
from backend.retrieve.sketch_domain import augment_sketches, frame_sketches
from backend.retrieve.losses import (LossWeights, caption_loss, classification_loss, hard_negative_loss, info_nce,
                                     total_loss)
from backend.retrieve.taskformer import (TaskFormer, TaskFormerConfig, build_vocab, check_clip_spec,
                                         model_from_checkpoint, read_checkpoint, save_checkpoint, set_trainable)
from backend.train_loop import TrainLoop, run_training_loop
from backend.world.captions import make_caption

MAX_LOGIT_SCALE = 100.0
"""Upper clamp of 1 / temperature (CLIP's)."""


@dataclass
class TrainConfig:
    """How TASK-former is trained (defaults: the CPU recipe of `benchmarks/retrieval_bench.py`)."""

    steps: int = 240
    """Optimiser steps (fixed, not timed: the result does not depend on the machine's speed)."""
    batch: int = 64
    """Shapes per step (distinct; capped at the number of train shapes). Each brings one triple."""
    lr: float = 1e-4
    """Peak AdamW learning rate of the CLIP towers' trained layers and the temperature."""
    head_lr: float = 1e-3
    """Peak AdamW learning rate of the new modules (classification head, caption decoder)."""
    weight_decay: float = 0.05
    """AdamW weight decay on weight matrices and convolutions (not gains, biases, embeddings, temperature)."""
    warmup: int = 20
    """Linear warm-up steps; then a cosine decay to `min_lr_fraction` of the peak."""
    min_lr_fraction: float = 0.1
    """Where the cosine schedule ends, relative to the peak."""
    train_layers: int = 1
    """Last blocks of each CLIP tower that are trained (ResNet stages or transformer blocks), with the towers'
    output projections; 0: projections only; -1: everything. CPU budget: the last stage of the domain CLIP's
    ResNet runs on 2x2 maps and is cheap, the early stages are where the time goes."""
    share_image_tower: bool = False
    """Encode sketches with the image tower (default: a separate copy of it, `TaskFormerConfig`)."""
    hard_negative: bool = False
    """Use the hard-negative contrastive loss (Robinson et al. 2021) as the embedding loss instead of InfoNCE."""
    beta: float = 1.0
    """Hard-negative concentration (0: uniform weights over negatives)."""
    tau_plus: float = 0.1
    """Hard-negative class prior: expected share of false negatives in a batch (0: no debiasing)."""
    photo_weight: float = 0.0
    """Weight of the photo term of the embedding loss (module docstring): each shape's saliency-cut photo
    against its view (0: no photos). Needs a dataset with photos."""
    lines_weight: float = 3.0
    """Weight of the line-drawing term of the embedding loss (module docstring): each shape's sketch against one
    of the index's clean line drawings of it, both through the sketch encoder, as a search compares a sketch
    with a database's "lines" vectors (0: no such term)."""
    frame_sketches: bool = True
    """Frame the training sketches as a search frames a user's sketch (`sketch_domain.frame_sketches`)."""
    extra_sketches: int = 12
    """More sketches per train shape, drawn from its library mesh from new random viewpoints as the world draws
    its sketches (`sketch_domain.cached_drawn_sketches`, seeded by `seed`): the viewpoint augmentation."""
    sketch_augment: bool = True
    """Augment training sketches' strokes (`sketch_domain.augment_sketches`: width, erased patches, warp) on top
    of the crops and mirroring."""
    photo_prompt_crops: bool = True
    """With the photo term: train on each photo cut out by its shape's object prompt ("a red chair", as `search
    --image --prompt` cuts, by the model's CLIP) besides the saliency cut (`photo_crops.cached_photo_crops`)."""
    extra_photos: int = 0
    """With the photo term: this many new world photos per train shape (`photo_crops.drawn_photos`, seeded by
    `seed`; drawn and cut once, cached), cut as the dataset's photos are. Measured with 4 (retrieval_bench data,
    seeds 0 and 1, photo R@1 by prompt 0.500 and 0.500 vs 0.525 and 0.488 without; by saliency 0.444 and 0.456 vs
    0.425 and 0.438): no gain by prompt for 4 minutes of drawing, so off by default."""
    photo_tower: bool = True
    """With the photo term: encode photos with a separate copy of the image tower (`TaskFormerConfig.photo_tower`),
    so the views', sketches' and texts' embeddings are not pulled towards photos; False: through the image tower."""
    weights: LossWeights = field(default_factory=LossWeights)
    """Embedding : classification : caption loss weights (100 : 10 : 1)."""
    caption_redraw: float = 0.5
    """Probability that a training caption is a paraphrase of the manifest caption (same labels, another
    template) rather than the caption itself."""
    crop_scale: tuple[float, float] = (0.8, 1.05)
    """Augmentation of images and sketches: side of the random square crop relative to the image (above 1:
    zoom out over white); (1, 1) with `flip=False` turns augmentation off."""
    flip: bool = True
    """Augmentation: mirror half of the images and sketches left-right (no caption names a side)."""
    decoder_layers: int = 2
    """Caption decoder blocks (`TaskFormerConfig.decoder_layers`)."""
    decoder_width: int = 128
    """Caption decoder width (`TaskFormerConfig.decoder_width`)."""
    checkpoint_every: int = 0
    """Write the checkpoint every this many steps (0: only at the end and when cancelled)."""
    seed: int = 0
    """Seed of the heads' initialisation, batch order, view and caption choice and augmentation."""
    threads: int | None = None
    """Torch CPU threads while training (None: leave the process setting). Results are reproducible for a
    fixed count."""

    def __post_init__(self) -> None:
        if isinstance(self.weights, dict):
            self.weights = LossWeights(**self.weights)
        self.crop_scale = tuple(float(v) for v in self.crop_scale)  # type: ignore[assignment]
        for name, low in (("steps", 1), ("batch", 2), ("warmup", 0), ("checkpoint_every", 0), ("seed", 0),
                          ("decoder_layers", 1), ("decoder_width", 8),
                          ("extra_sketches", 0), ("extra_photos", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"TrainConfig.{name} must be an integer >= {low}, got {value!r}")
        for name in ("lr", "head_lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < 1):
                raise ValueError(f"TrainConfig.{name} must be in (0, 1), got {value!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0 < self.min_lr_fraction <= 1:
            raise ValueError(f"TrainConfig.min_lr_fraction must be in (0, 1], got {self.min_lr_fraction}")
        if not isinstance(self.train_layers, int) or self.train_layers < -1:
            raise ValueError(f"TrainConfig.train_layers must be an integer >= -1, got {self.train_layers!r}")
        if not (isinstance(self.beta, (int, float)) and math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"TrainConfig.beta must be a finite number >= 0, got {self.beta!r}")
        if not (isinstance(self.tau_plus, (int, float)) and 0 <= self.tau_plus < 1):
            raise ValueError(f"TrainConfig.tau_plus must be in [0, 1), got {self.tau_plus!r}")
        if isinstance(self.photo_weight, bool) or not (isinstance(self.photo_weight, (int, float))
                                                       and math.isfinite(self.photo_weight) and self.photo_weight >= 0):
            raise ValueError(f"TrainConfig.photo_weight must be a finite number >= 0, got {self.photo_weight!r}")
        if isinstance(self.lines_weight, bool) or not (isinstance(self.lines_weight, (int, float))
                                                       and math.isfinite(self.lines_weight) and self.lines_weight >= 0):
            raise ValueError(f"TrainConfig.lines_weight must be a finite number >= 0, got {self.lines_weight!r}")
        if not 0 <= self.caption_redraw <= 1:
            raise ValueError(f"TrainConfig.caption_redraw must be in [0, 1], got {self.caption_redraw}")
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1]:
            raise ValueError(f"TrainConfig.crop_scale must be (low, high) with 0 < low <= high, got {self.crop_scale}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"TrainConfig.threads must be None or an integer >= 1, got {self.threads!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "TrainConfig":
        """A TrainConfig from `to_dict` output (a checkpoint's "train" entry); unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}")
        return cls(**raw)


RESUMABLE_CHANGES = ("steps", "checkpoint_every", "threads")
"""TrainConfig fields a resumed run may change; any other change would not continue the same run."""


@dataclass
class TrainResult:
    """A finished (or resumed and finished) run."""

    model: TaskFormer
    """The trained model, in eval mode."""
    losses: list[dict[str, float]]
    """Per step from the run's start (resumed runs include the steps before the checkpoint): "loss",
    "embedding", "classification", "caption" (and "photo", the photo term before its weight, when trained)."""
    steps: int
    """Steps done in all (== config.steps)."""
    start_step: int
    """The step this call began at (0, or the checkpoint's step when resumed)."""
    seconds: float
    """Wall time of this call's steps."""
    trainable: int
    """Trained parameters."""
    parameters: int
    """All parameters."""
    config: TrainConfig
    """The recipe."""


# ---------------------------------------------------------------------------------------------- batches


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def batch_shapes(step: int, shapes: int, batch: int, seed: int) -> torch.Tensor:
    """[batch] int64 distinct shape indices of `step`: epochs are seeded permutations, cut into full batches."""
    batch = min(batch, shapes)
    per_epoch = shapes // batch
    epoch, slot = divmod(step, per_epoch)
    order = torch.randperm(shapes, generator=torch.Generator().manual_seed(_seed(seed, 1, epoch)))
    return order[slot * batch:(slot + 1) * batch]


def paraphrase(labels: dict, rng: np.random.Generator) -> str:
    """A caption of the same labels as the manifest's (every label mentioned), in a template drawn from rng."""
    return make_caption(labels["category"], labels["colour"], labels["pattern"], labels["attributes"], rng)


def make_batch(data: RetrievalSplit, step: int, config: TrainConfig,
               photo_crops: torch.Tensor | None = None, index_lines: torch.Tensor | None = None) -> dict[str, Any]:
    """The training batch of `step`: {"shapes" [B], "images" [B,3,H,W], "sketches" [B,3,H,W] float in [0, 1],
    "captions" (B strings), "categories" [B]}, and with `photo_crops` ([N, P, H, W, 3] uint8, `photo_crops.py`)
    "photos" [B,3,H,W] (one cut-out photo per shape, augmented like the images), and with `index_lines` ([N, K, H,
    W, 3] uint8, `sketch_domain.py`) "lines" [B,3,H,W] (one of the index's line drawings per shape, as indexed:
    not augmented); a function of (data, step, config, photo_crops, index_lines) only. Photos, lines and the
    stroke augmentation are drawn from generators of their own, so the rest of the batch is the same with or
    without them."""
    shapes = batch_shapes(step, len(data), config.batch, config.seed)
    generator = torch.Generator().manual_seed(_seed(config.seed, 2, step))
    views = torch.randint(0, data.views.shape[1], (len(shapes),), generator=generator)
    sketch_ids = torch.randint(0, data.sketches.shape[1], (len(shapes),), generator=generator)
    images = to_float(data.views[shapes, views])
    sketches = to_float(data.sketches[shapes, sketch_ids])
    if config.flip or config.crop_scale != (1.0, 1.0):
        images = augment(images, generator, config.crop_scale, config.flip)
        sketches = augment(sketches, generator, config.crop_scale, config.flip)
    if config.sketch_augment:
        sketches = augment_sketches(sketches, torch.Generator().manual_seed(_seed(config.seed, 5, step)))
    rng = np.random.default_rng(_seed(config.seed, 3, step))
    captions = []
    for s in shapes.tolist():
        redraw = rng.random() < config.caption_redraw
        labelled = bool(data.labels[s].get("colour"))
        captions.append(paraphrase(data.labels[s], rng) if redraw and labelled else data.captions[s])
    batch = {"shapes": shapes, "images": images, "sketches": sketches, "captions": captions,
             "categories": data.categories[shapes]}
    if photo_crops is not None:
        photo_generator = torch.Generator().manual_seed(_seed(config.seed, 4, step))
        picks = torch.randint(0, photo_crops.shape[1], (len(shapes),), generator=photo_generator)
        photos = to_float(photo_crops[shapes, picks])
        if config.flip or config.crop_scale != (1.0, 1.0):
            photos = augment(photos, photo_generator, config.crop_scale, config.flip)
        batch["photos"] = photos
    if index_lines is not None:
        lines_generator = torch.Generator().manual_seed(_seed(config.seed, 6, step))
        picks = torch.randint(0, index_lines.shape[1], (len(shapes),), generator=lines_generator)
        batch["lines"] = to_float(index_lines[shapes, picks])
    return batch


def decoder_vocab(data: RetrievalSplit, tokenizer, paraphrases: int = 4) -> tuple[int, ...]:
    """The caption decoder's vocabulary: BPE tokens of the split's captions and of `paraphrases` seeded
    paraphrases per shape (so paraphrase templates' words are in it); anything else decodes as <unk>."""
    rng = np.random.default_rng(0)
    texts = list(data.captions)
    for labels in data.labels:
        if labels.get("colour"):
            texts.extend(paraphrase(labels, rng) for _ in range(paraphrases))
    return build_vocab(tokenizer(texts), int(tokenizer.eot_token_id))


# ---------------------------------------------------------------------------------------------- optimiser


def _param_groups(model: TaskFormer, config: TrainConfig) -> list[dict]:
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        new = name.startswith(("classifier.", "decoder."))
        no_decay = param.ndim < 2 or "embed" in name or "logit_scale" in name or "positions" in name
        groups.setdefault((new, no_decay), []).append(param)
    peak = {True: config.head_lr, False: config.lr}
    return [{"params": params, "lr": peak[new], "peak_lr": peak[new],
             "weight_decay": 0.0 if no_decay else config.weight_decay}
            for (new, no_decay), params in sorted(groups.items())]


def lr_factor(step: int, config: TrainConfig) -> float:
    """Learning rate at `step` relative to the peak: linear warm-up, then cosine to `min_lr_fraction`."""
    if step < config.warmup:
        return (step + 1) / config.warmup
    t = (step - config.warmup) / max(1, config.steps - config.warmup)
    low = config.min_lr_fraction
    return low + 0.5 * (1 - low) * (1 + math.cos(math.pi * min(1.0, t)))


# ---------------------------------------------------------------------------------------------- training


def _check_resume(recorded: dict | None, config: TrainConfig, path: Path) -> None:
    if recorded is None:
        raise InvalidInputError(f"{path} records no training recipe, so it cannot be resumed",
                                hint="start a new run with --init to fine-tune from it")
    mine = config.to_dict()
    theirs = TrainConfig.from_dict(recorded).to_dict()
    changed = sorted(k for k in mine if k not in RESUMABLE_CHANGES and mine[k] != theirs[k])
    if changed:
        raise InvalidInputError(f"resuming {path} with a different recipe ({', '.join(changed)} changed)",
                                hint="resume with the checkpoint's settings (only --steps may change), "
                                     "or start a new run with --init")


def build_model(clip: ClipModel, data: RetrievalSplit, config: TrainConfig) -> TaskFormer:
    """A fresh TaskFormer on `clip` for `data`'s classes and captions; heads initialised from `config.seed`."""
    model_config = TaskFormerConfig(class_names=data.class_names, decoder_vocab=decoder_vocab(data, clip.tokenizer),
                                    share_image_tower=config.share_image_tower, decoder_layers=config.decoder_layers,
                                    photo_tower=config.photo_tower and config.photo_weight > 0,
                                    decoder_width=config.decoder_width)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return TaskFormer(clip, model_config)


def train(data: RetrievalSplit, config: TrainConfig, clip: ClipModel | None = None, *, out: str | Path | None = None,
          resume: str | Path | None = None, init: str | Path | None = None, device: str | torch.device = "cpu",
          progress: ProgressFn = no_progress, cancel: CancelToken | None = None,
          photo_crops: torch.Tensor | None = None, index_lines: torch.Tensor | None = None) -> TrainResult:
    """Trains TASK-former on `data` (a train split from `load_split`).

    Start from exactly one of: `clip` (a fresh TaskFormer on it), `init` (a TASK-former checkpoint's weights,
    fine-tuned as a new run: fresh optimiser, step 0), or `resume` (a checkpoint of this run: weights,
    optimiser state and step; `config` may change only `RESUMABLE_CHANGES`). `out`: the checkpoint written at
    the end, every `config.checkpoint_every` steps, and when cancelled (then JobCancelled is raised after it
    is written). Calls progress(step, steps, loss=..., embedding=..., classification=..., caption=..., lr=...)
    after every step (and photo=..., lines=... with those terms) and checks `cancel` before each. photo_crops:
    the split's cut-out photos for the photo term (default, when `config.photo_weight` > 0: `cached_photo_crops`);
    index_lines: the split's index line drawings for the lines term (default, when `config.lines_weight` > 0:
    `cached_index_lines`).
    """
    if sum(x is not None for x in (clip, init, resume)) != 1:
        raise ValueError("train() starts from exactly one of clip, init and resume")
    if len(data) < 2:
        raise InvalidInputError(f"training needs at least 2 train shapes, the split has {len(data)}",
                                hint="write a dataset with more shapes")
    context = torch_threads(config.threads) if config.threads else contextlib.nullcontext()
    with context:
        if config.photo_weight > 0:
            if photo_crops is None:
                from backend.retrieve.photo_crops import cached_photo_crops  # noqa: PLC0415

                photo_crops = cached_photo_crops(data)
            if tuple(photo_crops.shape[:2]) != tuple(data.photos.shape[:2]) or photo_crops.dtype != torch.uint8:
                raise ValueError(f"photo_crops must be [N, P, H, W, 3] uint8 for the split's {tuple(data.photos.shape[:2])} "
                                 f"photos, got {tuple(photo_crops.shape)} {photo_crops.dtype}")
        else:
            photo_crops = None
        if config.lines_weight > 0:
            if index_lines is None:
                from backend.retrieve.sketch_domain import cached_index_lines  # noqa: PLC0415

                index_lines = cached_index_lines(data)
            if index_lines.ndim != 5 or index_lines.shape[0] != len(data) or index_lines.dtype != torch.uint8:
                raise ValueError(f"index_lines must be [N, K, H, W, 3] uint8 for the split's {len(data)} shapes, "
                                 f"got {tuple(index_lines.shape)} {index_lines.dtype}")
        else:
            index_lines = None
        if config.extra_sketches:
            from backend.retrieve.sketch_domain import cached_drawn_sketches  # noqa: PLC0415

            drawn = cached_drawn_sketches(data, config.extra_sketches, config.seed)
            data = replace(data, sketches=torch.cat([data.sketches, drawn], dim=1))
        if config.frame_sketches:
            data = replace(data, sketches=frame_sketches(data.sketches))
        return _train(data, config, clip, out, resume, init, torch.device(device), progress, cancel, photo_crops,
                      index_lines)


def _train(data: RetrievalSplit, config: TrainConfig, clip: ClipModel | None, out, resume, init,
           device: torch.device, progress: ProgressFn, cancel: CancelToken | None,
           photo_crops: torch.Tensor | None = None, index_lines: torch.Tensor | None = None) -> TrainResult:
    history: list[dict[str, float]] = []
    start = 0
    optimizer_state = None
    if clip is not None:
        model = build_model(clip, data, config)
    else:
        path = Path(resume if resume is not None else init)
        ckpt = read_checkpoint(path)
        model = model_from_checkpoint(ckpt, source=str(path))
        if tuple(model.config.class_names) != tuple(data.class_names):
            raise InvalidInputError(f"{path} classifies {list(model.config.class_names)}, the data has "
                                    f"{list(data.class_names)}", hint="train a new model on this dataset")
        if model.config.share_image_tower != config.share_image_tower:
            config = replace(config, share_image_tower=model.config.share_image_tower)
        if config.photo_weight > 0 and model.config.photo_tower != config.photo_tower:
            config = replace(config, photo_tower=model.config.photo_tower)  # the checkpoint's towers decide
        if resume is not None:
            _check_resume(ckpt.get("train"), config, path)
            start = int(ckpt["step"])
            optimizer_state = ckpt.get("optimizer")
            history = list((ckpt.get("extra") or {}).get("history", []))[:start]
            if start > config.steps:
                raise InvalidInputError(f"{path} is at step {start}, past --steps {config.steps}",
                                        hint=f"pass --steps above {start} to train further")
    if photo_crops is not None and (config.photo_prompt_crops or config.extra_photos):
        from backend.retrieve.photo_crops import cached_photo_crops  # noqa: PLC0415

        more = []
        for clip_cut in [None, model.clip] if config.photo_prompt_crops else [None]:
            if clip_cut is not None:
                more.append(cached_photo_crops(data, clip=clip_cut))
            if config.extra_photos:
                more.append(cached_photo_crops(data, clip=clip_cut, extra=config.extra_photos, seed=config.seed))
        photo_crops = torch.cat([photo_crops, *more], dim=1)
    model = model.to(device)
    set_trainable(model, config.train_layers)
    optimizer = torch.optim.AdamW(_param_groups(model, config), betas=(0.9, 0.98), eps=1e-6)
    if optimizer_state is not None:
        try:
            optimizer.load_state_dict(optimizer_state)
        except (ValueError, KeyError) as exc:
            raise InvalidInputError(f"the optimiser state in {resume} does not fit this model: {exc}",
                                    hint="resume with the settings the run was started with") from exc
    model.train()

    def save(step: int) -> None:
        if out is not None:
            save_checkpoint(out, model, optimizer, step, config.to_dict(), extra={"history": history})

    started = time.perf_counter()
    weights = config.weights

    def loss_at(step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch = make_batch(data, step, config, photo_crops, index_lines)
        tokens = model.tokenize(batch["captions"])
        result = model(batch["images"].to(device), batch["sketches"].to(device), tokens)
        scale = model.logit_scale

        def contrast(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor = scale) -> torch.Tensor:
            if config.hard_negative:
                return hard_negative_loss(a, b, scale, config.beta, config.tau_plus)
            return info_nce(a, b, scale)

        embedding = contrast(result["image"], result["query"])
        parts = {}
        if photo_crops is not None:
            # The photo is embedded as `search` embeds a photo query (QueryEncoder.encode_photo -> encode_photo).
            # The views and the temperature are its fixed targets (detached): the photo term moves the photo
            # encoder only, so with a photo tower the sketch and text training is that of a run without photos.
            photo = contrast(result["image"].detach(), model.encode_photo(batch["photos"].to(device)), scale.detach())
            embedding = embedding + config.photo_weight * photo
            parts["photo"] = photo.detach()
        if index_lines is not None:
            # The sketch against the index's drawing of its shape, both through the sketch encoder, as a search
            # scores a sketch against a database's "lines" vectors.
            lines = contrast(model.encode_sketch(batch["lines"].to(device)), result["sketch"])
            embedding = embedding + config.lines_weight * lines
            parts["lines"] = lines.detach()
        classification = classification_loss(result["class_logits"], batch["categories"].to(device))
        caption = caption_loss(result["caption_logits"], result["caption_targets"])
        loss = total_loss(embedding, classification, caption, weights)
        if not torch.isfinite(loss):
            raise RuntimeError(f"the TASK-former loss became {loss.item()} at step {step}; lower --lr")
        return loss, {"embedding": embedding.detach(), "classification": classification.detach(),
                      "caption": caption.detach(), **parts}

    def clamp_scale() -> None:
        with torch.no_grad():
            model.clip_model.logit_scale.clamp_(0, math.log(MAX_LOGIT_SCALE))

    run_training_loop(optimizer, loss_at, TrainLoop(
        steps=config.steps, start=start, lr_at=lambda step, group: group["peak_lr"] * lr_factor(step, config),
        checkpoint_every=config.checkpoint_every, save=save, save_on_cancel=True, after_step=clamp_scale,
        report_lr=True, on_record=history.append), progress=progress, cancel=cancel)
    seconds = time.perf_counter() - started
    save(config.steps)
    model.eval()
    return TrainResult(model=model, losses=history, steps=config.steps, start_step=start, seconds=seconds,
                       trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
                       parameters=sum(p.numel() for p in model.parameters()), config=config)


def resume_config(path: str | Path, **changes: Any) -> TrainConfig:
    """The TrainConfig recorded in a checkpoint, with `changes` (only `RESUMABLE_CHANGES`) applied."""
    ckpt = read_checkpoint(path)
    if ckpt.get("train") is None:
        raise InvalidInputError(f"{path} records no training recipe, so it cannot be resumed",
                                hint="start a new run with --init to fine-tune from it")
    bad = sorted(set(changes) - set(RESUMABLE_CHANGES))
    if bad:
        raise InvalidInputError(f"a resumed run cannot change {', '.join(bad)}",
                                hint="resume with the checkpoint's settings, or start a new run with --init")
    return replace(TrainConfig.from_dict(ckpt["train"]), **changes)


def clip_spec_for(path: str | Path, requested: str | None) -> str:
    """The CLIP spec of a TASK-former checkpoint, checked against --clip (`check_clip_spec`)."""
    return check_clip_spec(str(read_checkpoint(path)["clip"]["spec"]), requested, f"the checkpoint {path}")
