"""Training the point-cloud encoder against a frozen CLIP (issue 23; seed 002: OpenShape / ULIP pre-alignment).

The teacher is the CLIP the library is searched with (the domain CLIP here, a real CLIP where weights exist). For
each training shape it gives two targets: the mean of its image embeddings over a few shaded index views
(`IndexViewConfig` cameras, the same renders the view index stores), and the text embeddings of its captions. The
encoder's embedding of the shape's coloured surface samples is pulled to both by symmetric contrastive losses over
a batch of distinct shapes: InfoNCE, or the multi-modal hard contrastive loss (HCL, Robinson et al. 2021, as in the
seed paper) of `backend.retrieve.losses` with its beta and tau_plus. CLIP stays frozen, so the encoder lands in
the space the CLIP's image and text queries already live in.

World shapes (`backend.world`) are the training set, so this module is a trainer on the world (see
tests/house/test_imports.py::TRAINING_ON_WORLD); `teacher_targets` itself takes any meshes and captions.
`train_point_encoder(..., init=encoder)` fine-tunes instead: it starts from a copy of a pre-aligned encoder
(its architecture, weights and, unless `temperature_from_init` is False, its temperature);
`backend.retrieve.finetune_points` does so on an indexed library.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from backend.checkpoints import cosine_factor
from backend.errors import InvalidInputError
from backend.geometry.mesh import Mesh
from backend.geometry.point_samples import coloured_points
from backend.progress import CancelToken, ProgressFn, no_progress
from backend.retrieve.losses import hard_negative_loss, info_nce
from backend.retrieve.point_encoder import PointEncoder, PointEncoderConfig, load_point_encoder, save_point_encoder
from backend.train_loop import TrainLoop, run_training_loop

MAX_LOGIT_SCALE = 100.0
"""CLIP's clamp on 1 / temperature."""


@dataclass(frozen=True)
class PointTrainConfig:
    """How a point encoder is trained against a frozen CLIP."""

    shapes: int = 4096
    """World shapes to train on (categories round-robin, `backend.world.dataset.dataset_seeds`). The defaults are the
    shipped encoder's recipe (`python build.py points`)."""
    seed: int = 0
    """Seeds the shapes, the samples, the batches and the initial weights."""
    points: int = 1024
    """Surface samples per cloud."""
    clouds_per_shape: int = 4
    """Independent clouds sampled per shape; each step takes one at random (a resampling augmentation)."""
    jitter: float = 0.005
    """Standard deviation of Gaussian noise added to the xyz of each training cloud (unit sphere frame); 0: none."""
    views: int = 6
    """Teacher views per shape (the index cameras); the image target is their mean embedding."""
    captions_per_shape: int = 4
    """Captions per shape (its own and re-drawn phrasings); each step takes one at random."""
    steps: int = 2500
    """Optimiser steps."""
    batch: int = 32
    """Distinct shapes per step (capped at the number of shapes)."""
    lr: float = 5e-4
    """Peak AdamW learning rate (linear warm-up, then a cosine to 5%)."""
    warmup: int = 50
    """Warm-up steps."""
    weight_decay: float = 0.05
    """AdamW weight decay (not on the temperature)."""
    image_weight: float = 1.0
    """Weight of the point <-> image loss."""
    text_weight: float = 1.0
    """Weight of the point <-> text loss."""
    loss: Literal["info_nce", "hcl"] = "info_nce"
    """The contrastive loss: symmetric InfoNCE, or the hard contrastive loss (HCL)."""
    beta: float = 1.0
    """HCL concentration on hard negatives (>= 0; 0 with tau_plus 0 is InfoNCE)."""
    tau_plus: float = 0.1
    """HCL class prior: the expected share of false negatives in a batch, in [0, 1)."""
    temperature: float = 0.07
    """Initial temperature of the losses (logit scale 1 / temperature, clamped at 100)."""
    learn_temperature: bool = True
    """Learn the temperature (CLIP's way) or keep it fixed."""
    temperature_from_init: bool = True
    """When fine-tuning from an init encoder: start from its learned temperature (True) or from `temperature`
    (False). No effect on a fresh encoder, which always starts from `temperature`."""
    checkpoint_every: int = 0
    """Write the checkpoint every this many steps (0: only at the end)."""

    def __post_init__(self) -> None:
        for name in ("shapes", "points", "clouds_per_shape", "views", "captions_per_shape", "steps", "batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"PointTrainConfig.{name} must be a positive integer, got {value!r}",
                                        hint="see the field's documentation in backend/retrieve/train_points.py")
        if self.shapes < 2 or self.batch < 2:
            raise InvalidInputError(f"contrastive training needs at least 2 shapes and a batch of 2, got shapes "
                                    f"{self.shapes}, batch {self.batch}", hint="e.g. shapes 512, batch 32")
        if self.loss not in ("info_nce", "hcl"):
            raise InvalidInputError(f"PointTrainConfig.loss must be 'info_nce' or 'hcl', got {self.loss!r}")
        if not (self.beta >= 0 and 0.0 <= self.tau_plus < 1.0):
            raise InvalidInputError(f"HCL needs beta >= 0 and tau_plus in [0, 1), got {self.beta}, {self.tau_plus}",
                                    hint="the seed paper's defaults: beta 1.0, tau_plus 0.1")
        if not (0.0 < self.temperature <= 1.0 and self.lr > 0 and self.jitter >= 0):
            raise InvalidInputError("PointTrainConfig needs temperature in (0, 1], lr > 0 and jitter >= 0",
                                    hint="e.g. temperature 0.07, lr 5e-4, jitter 0.005")
        if self.image_weight < 0 or self.text_weight < 0 or self.image_weight + self.text_weight <= 0:
            raise InvalidInputError("PointTrainConfig needs image_weight, text_weight >= 0, not both 0",
                                    hint="1.0 and 1.0 align the points with both CLIP towers")


@dataclass
class PointTeacherSet:
    """Training clouds and the teacher's targets, row i for shape i."""

    clouds: torch.Tensor
    """[N, clouds_per_shape, P, 6] float32 coloured samples (`coloured_points`)."""
    image: torch.Tensor
    """[N, D] float32 unit rows: the mean CLIP image embedding of the shape's views, renormalised."""
    text: torch.Tensor
    """[N, T, D] float32 unit rows: CLIP text embeddings of the shape's captions."""
    clip_spec: str
    """The teacher CLIP's spec."""

    def __post_init__(self) -> None:
        n = self.clouds.shape[0]
        if self.image.shape[0] != n or self.text.shape[0] != n:
            raise ValueError(f"clouds, image and text targets disagree on the shape count: {n}, "
                             f"{self.image.shape[0]}, {self.text.shape[0]}")


@torch.no_grad()
def teacher_targets(meshes: Sequence[Mesh], captions: Sequence[Sequence[str]], clip, config: PointTrainConfig,
                    device: torch.device | str = "cpu", progress: ProgressFn = no_progress,
                    cancel: CancelToken | None = None) -> PointTeacherSet:
    """Clouds and CLIP targets of any meshes: shaded views from the index cameras (`config.views`, the CLIP's image
    size) encoded and averaged; each shape's captions encoded (cycled to `config.captions_per_shape`)."""
    from backend.render.views import shaded_images
    from backend.retrieve.views import IndexViewConfig, index_cameras

    if len(meshes) != len(captions) or any(not own for own in captions):
        raise InvalidInputError("every shape needs at least one caption", hint="pass one list of captions per mesh")
    view_config = IndexViewConfig(views=config.views).resolved(clip.image_size)
    cameras, lights = index_cameras(view_config, device)
    rng = np.random.default_rng(config.seed)
    clouds, images, texts = [], [], []
    for done, (mesh, own) in enumerate(zip(meshes, captions), 1):
        if cancel is not None:
            cancel.check()
        clouds.append(np.stack([coloured_points(mesh, config.points, rng) for _ in range(config.clouds_per_shape)]))
        shaded = shaded_images(mesh, cameras, lights, view_config.size, device, view_config.ambient)
        views = clip.encode_image(shaded.permute(0, 3, 1, 2).to(clip.device)).float().cpu()
        images.append(torch.nn.functional.normalize(views.mean(dim=0), dim=-1))
        chosen = [own[k % len(own)] for k in range(config.captions_per_shape)]
        texts.append(torch.nn.functional.normalize(clip.encode_text(chosen).float().cpu(), dim=-1))
        progress(done, len(meshes), stage="teacher")
    return PointTeacherSet(torch.as_tensor(np.stack(clouds)), torch.stack(images), torch.stack(texts), clip.spec)


def world_teacher(clip, config: PointTrainConfig, device: torch.device | str = "cpu",
                  progress: ProgressFn = no_progress, cancel: CancelToken | None = None) -> PointTeacherSet:
    """`teacher_targets` of the first `config.shapes` world shapes of `config.seed`, each with its own caption and
    re-drawn phrasings of the same labels."""
    from backend.world.captions import make_caption
    from backend.world.dataset import dataset_seeds
    from backend.world.shape import make_shape

    meshes, captions = [], []
    for shape_seed, category in dataset_seeds(config.shapes, config.seed):
        shape = make_shape(shape_seed, category)
        rng = np.random.default_rng([config.seed, shape_seed])
        more = [make_caption(shape.category, shape.colour, shape.pattern, shape.attributes, rng)
                for _ in range(config.captions_per_shape - 1)]
        meshes.append(shape.mesh)
        captions.append([shape.caption, *more])
    return teacher_targets(meshes, captions, clip, config, device, progress, cancel)


def contrastive(points: torch.Tensor, targets: torch.Tensor, scale: torch.Tensor, config: PointTrainConfig):
    """The configured symmetric loss between point embeddings and teacher targets ([B, D] unit rows each)."""
    if config.loss == "hcl":
        return hard_negative_loss(points, targets, scale, beta=config.beta, tau_plus=config.tau_plus)
    return info_nce(points, targets, scale)


def check_init(init: PointEncoder, data: PointTeacherSet, encoder_config: PointEncoderConfig | None = None) -> None:
    """InvalidInputError unless `init` can be fine-tuned on `data`: the same CLIP, the teacher's embed_dim, and
    (when given) the same encoder config."""
    from backend.retrieve.taskformer import canonical_clip_spec

    embed_dim = int(data.image.shape[1])
    if not isinstance(init, PointEncoder):
        raise InvalidInputError(f"init must be a PointEncoder, got {type(init).__name__}",
                                hint="load one with backend.retrieve.point_encoder.load_point_encoder(PATH)")
    if not init.clip_spec or canonical_clip_spec(init.clip_spec) != canonical_clip_spec(data.clip_spec):
        raise InvalidInputError(
            f"the init point encoder was trained for the CLIP {init.clip_spec or '(none recorded)'!r}, but the "
            f"teacher targets are from {data.clip_spec!r}: its embeddings are in another space",
            hint=f"start from a point encoder trained for {data.clip_spec} (python -m backend.retrieve.train_points "
                 f"--clip {data.clip_spec} --out PATH), or build the targets with the init's CLIP")
    if init.config.embed_dim != embed_dim:
        raise InvalidInputError(f"the init point encoder embeds in {init.config.embed_dim} dimensions, the teacher "
                                f"CLIP in {embed_dim}", hint="start from a point encoder trained for this CLIP")
    if encoder_config is not None and encoder_config != init.config:
        raise InvalidInputError("an encoder_config was given with an init encoder, and they differ",
                                hint="drop encoder_config: fine-tuning keeps the init's architecture")


def train_point_encoder(data: PointTeacherSet, config: PointTrainConfig,
                        encoder_config: PointEncoderConfig | None = None, out: str | Path | None = None,
                        device: torch.device | str = "cpu", progress: ProgressFn = no_progress,
                        cancel: CancelToken | None = None,
                        init: PointEncoder | None = None) -> tuple[PointEncoder, list[dict[str, float]]]:
    """Trains an encoder on `data`; writes the checkpoint to `out` (periodic and final) when given. Returns (the
    encoder in eval mode, each step's record: loss, image, text, temperature).

    Without `init`, a fresh encoder of `encoder_config` (embed_dim set to the teacher's), seeded by config.seed.
    With `init` (fine-tuning), a copy of it (`init` itself is left untouched): its config and weights, and its
    logit scale unless `config.temperature_from_init` is False (then `config.temperature`). Its embed_dim must be
    the teacher's and its clip_spec data.clip_spec (InvalidInputError naming both otherwise); `encoder_config`,
    when also given, must equal the init's."""
    embed_dim = int(data.image.shape[1])
    if init is not None:
        check_init(init, data, encoder_config)
        encoder_config = init.config
    else:
        encoder_config = PointEncoderConfig(**{**asdict(encoder_config or PointEncoderConfig()),
                                               "embed_dim": embed_dim})
    if data.clouds.shape[2] < encoder_config.min_points:
        raise InvalidInputError(f"training clouds of {data.clouds.shape[2]} points are too small for the encoder "
                                f"(it needs {encoder_config.min_points})", hint="raise PointTrainConfig.points")
    torch.manual_seed(config.seed)
    device = torch.device(device)
    if init is not None:
        model = copy.deepcopy(init).to(device)
        model.requires_grad_(True)
    else:
        model = PointEncoder(encoder_config).to(device)
    model.clip_spec = data.clip_spec
    if init is None or not config.temperature_from_init:
        with torch.no_grad():
            model.logit_scale.fill_(float(np.log(1.0 / config.temperature)))
    model.logit_scale.requires_grad_(config.learn_temperature)
    decay = [p for name, p in model.named_parameters() if p.ndim >= 2]
    rest = [p for name, p in model.named_parameters() if p.ndim < 2 and p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=config.lr)
    n_shapes, n_clouds = data.clouds.shape[:2]
    batch = min(config.batch, n_shapes)
    generator = torch.Generator().manual_seed(config.seed)
    records: list[dict[str, float]] = []

    def loss_at(step: int):
        shapes = torch.randperm(n_shapes, generator=generator)[:batch]
        which = torch.randint(n_clouds, (batch,), generator=generator)
        clouds = data.clouds[shapes, which]
        if config.jitter:
            noise = torch.randn(clouds.shape[:2] + (3,), generator=generator) * config.jitter
            clouds = torch.cat([clouds[..., :3] + noise, clouds[..., 3:]], dim=-1)
        caption = torch.randint(data.text.shape[1], (batch,), generator=generator)
        embedded = model(clouds.to(device))
        scale = model.logit_scale.exp()
        image = contrastive(embedded, data.image[shapes].to(device), scale, config)
        text = contrastive(embedded, data.text[shapes, caption].to(device), scale, config)
        loss = config.image_weight * image + config.text_weight * text
        return loss, {"image": image.detach(), "text": text.detach(), "temperature": 1.0 / float(scale.detach())}

    def lr_at(step: int, group: dict) -> float:
        warm = min(1.0, (step + 1) / max(config.warmup, 1))
        return config.lr * warm * cosine_factor(step, config.steps)

    def clamp() -> None:
        with torch.no_grad():
            model.logit_scale.clamp_(0.0, float(np.log(MAX_LOGIT_SCALE)))

    def save(step: int) -> None:
        save_point_encoder(out, model, config, optimizer, step, [r["loss"] for r in records])

    model.train()
    loop = TrainLoop(steps=config.steps, lr_at=lr_at, checkpoint_every=config.checkpoint_every,
                     save=save if out is not None else None, after_step=clamp, on_record=records.append)
    run_training_loop(optimizer, loss_at, loop, progress, cancel)
    if out is not None:
        save(config.steps)
    return model.eval(), records


@torch.no_grad()
def recall_at_1(model: PointEncoder, clouds: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of shapes whose target (row i of targets [N, D]) is nearest to their own cloud's embedding among all N
    clouds ([N, P, 6]): the target-as-query retrieval a single-embedding index does."""
    embedded = model.encode(clouds)
    return float(((targets.float() @ embedded.T).argmax(dim=1) == torch.arange(len(targets))).float().mean())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="train a point-cloud encoder aligned to a CLIP on world shapes")
    parser.add_argument("--out", required=True, help="the checkpoint to write")
    parser.add_argument("--clip", default="domain", help="the teacher CLIP spec (default: the domain CLIP)")
    parser.add_argument("--shapes", type=int, default=PointTrainConfig.shapes)
    parser.add_argument("--steps", type=int, default=PointTrainConfig.steps)
    parser.add_argument("--batch", type=int, default=PointTrainConfig.batch)
    parser.add_argument("--loss", choices=("info_nce", "hcl"), default="info_nce")
    parser.add_argument("--beta", type=float, default=PointTrainConfig.beta, help="HCL concentration (default 1.0)")
    parser.add_argument("--tau-plus", type=float, default=PointTrainConfig.tau_plus,
                        help="HCL class prior (default 0.1)")
    parser.add_argument("--init", default=None, metavar="PATH",
                        help="start from this point encoder (trained for --clip) instead of random weights")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from backend.devices import resolve_device
    from backend.models.clip import load_clip

    device = resolve_device(args.device)
    config = PointTrainConfig(shapes=args.shapes, steps=args.steps, batch=args.batch, loss=args.loss,
                              beta=args.beta, tau_plus=args.tau_plus)
    started = time.perf_counter()
    last = {"t": 0.0}

    def progress(step: int, total: int, stage: str = "train", **metrics) -> None:
        now = time.perf_counter()
        if step == total or now - last["t"] > 15:
            loss = f" loss {metrics['loss']:.4f}" if "loss" in metrics else ""
            print(f"[points] {stage} {step}/{total}{loss} ({now - started:.0f} s)", flush=True)
            last["t"] = now

    clip = load_clip(args.clip, device)
    init = load_point_encoder(args.init, clip.spec, device) if args.init else None
    data = world_teacher(clip, config, device, progress)
    teacher_seconds = time.perf_counter() - started
    model, records = train_point_encoder(data, config, out=args.out, device=device, progress=progress, init=init)
    # The file kept is the model alone (a third of the size): this command does not resume, the optimizer's
    # state is only for periodic checkpoints.
    save_point_encoder(args.out, model, config, None, config.steps, [r["loss"] for r in records])
    seconds = time.perf_counter() - started
    figures = {"seconds": round(seconds, 1), "teacher_seconds": round(teacher_seconds, 1), "init": args.init,
               "threads": torch.get_num_threads(), "clip": clip.spec, "config": asdict(config),
               "loss_first": records[0]["loss"], "loss_last": records[-1]["loss"],
               "train_recall_at_1_image": recall_at_1(model, data.clouds[:, 0], data.image)}
    Path(str(args.out) + ".json").write_text(json.dumps(figures, indent=1))
    print(f"[points] wrote {args.out}: {json.dumps(figures)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
