"""Training a text-to-shape generator on a shape library (CLIP-Forge's two stages), resumable.

Stages: read the library (voxelise) -> train the occupancy autoencoder -> encode every shape -> render views and
embed them with the CLIP, embed the shapes' captions and category prompts -> train the conditional flow on
(latent, view or text embedding) -> write one generator file. With `init` (a trained generator, e.g. the shipped
one) both stages start from its weights: fine-tuning on a user's library.
While it runs, `OUT.parts/` holds each stage's state (the autoencoder and flow training checkpoints, the view
embeddings, the library fingerprint); `resume=True` picks them up, a finished generator removes them.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from backend.checkpoints import save_atomic
from backend.errors import InvalidInputError
from backend.generate.flow import FlowConfig
from backend.generate.generator import save_generator
from backend.generate.library import (ShapeLibrary, index_view_embeddings, read_library, text_embeddings,
                                      view_embeddings)
from backend.generate.occupancy import OccupancyAutoencoderConfig
from backend.generate.train_autoencoder import AutoencoderTrainConfig, reconstruction_iou, train_autoencoder
from backend.generate.train_flow import FlowTrainConfig, train_flow
from backend.progress import CancelToken, no_progress


@dataclass
class GeneratorTrainConfig:
    """Everything `train_generator` needs besides the library and the CLIP (the paper's sizes by default)."""

    autoencoder: OccupancyAutoencoderConfig = field(default_factory=OccupancyAutoencoderConfig)
    """The autoencoder's shape (voxel resolution, latent size, widths)."""
    autoencoder_training: AutoencoderTrainConfig = field(default_factory=AutoencoderTrainConfig)
    """Steps, batch, learning rate of stage 1."""
    flow: FlowConfig = field(default_factory=FlowConfig)
    """The flow's shape; its latent_dim and condition_dim are set from the autoencoder and the CLIP."""
    flow_training: FlowTrainConfig = field(default_factory=FlowTrainConfig)
    """Steps, batch, learning rate of stage 2."""
    views: int = 6
    """Rendered views per shape whose CLIP embeddings condition the flow (one drawn per shape per step)."""
    max_shapes: int = 0
    """Train on the first this many library files (sorted by path); 0: all."""
    index_db: str = ""
    """A retrieval database of this library (`atelier index`) whose shaded-view embeddings, when made with the same
    files and plain CLIP, are reused as the flow's conditions instead of rendering views again ("": render)."""

    def from_generator(self, generator) -> "GeneratorTrainConfig":
        """Takes the model shapes of a trained generator (to fine-tune it: its weights need its shapes)."""
        self.autoencoder = generator.autoencoder.config
        self.flow = generator.flow.config
        return self

    def with_epochs(self, epochs: int, shapes: int) -> "GeneratorTrainConfig":
        """Sets both stages' steps to `epochs` passes over `shapes` shapes at their batch sizes."""
        if epochs < 1:
            raise InvalidInputError(f"epochs must be >= 1, got {epochs}")
        for training in (self.autoencoder_training, self.flow_training):
            training.steps = max(1, math.ceil(epochs * shapes / min(training.batch_size, shapes)))
        return self


@dataclass
class TrainGeneratorReport:
    shapes: int
    categories: dict[str, int]
    skipped: list[str]
    autoencoder_loss: float
    flow_loss: float
    reconstruction_iou: float
    """Mean voxel IoU of the autoencoder's reconstructions of (up to 64) training shapes at the voxel resolution."""
    stage_seconds: dict[str, float]
    """Wall time of each stage: library, autoencoder, views, flow."""
    resumed: list[str]
    """The stages picked up from OUT.parts."""
    conditions: str = "rendered"
    """Where the flow's conditions came from: "rendered", or "index" (a retrieval database's view embeddings)."""
    notes: list[str] = field(default_factory=list)
    """Why the index was not reused, and the like."""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def _check_parts(parts: Path, library: ShapeLibrary, clip_spec: str, resume: bool) -> None:
    stamp = parts / "library.json"
    wanted = {"fingerprint": library.fingerprint, "clip": clip_spec}
    if resume and stamp.is_file():
        found = json.loads(stamp.read_text())
        if found != wanted:
            raise InvalidInputError(f"cannot resume from {parts}: it was started on another library or CLIP "
                                    f"({found.get('clip')!r})", f"delete {parts}, or resume with the same inputs")
        return
    if parts.exists():
        shutil.rmtree(parts)
    parts.mkdir(parents=True)
    stamp.write_text(json.dumps(wanted))


def train_generator(library_dir: str | Path, out: str | Path, clip, config: GeneratorTrainConfig | None = None, *,
                    epochs: int | None = None, resume: bool = False, device: torch.device | str = "cpu",
                    init=None, progress=no_progress, cancel: CancelToken | None = None) -> TrainGeneratorReport:
    """Trains a generator on the meshes under `library_dir` and writes it to `out` (see the module doc).

    clip: the loaded `ClipModel` whose image embeddings condition the flow (its spec is recorded). epochs, when
    given, sets both stages' steps (`GeneratorTrainConfig.with_epochs`). progress(step, total, stage=..., **metrics)
    with stage "library", "autoencoder", "views", "flow"; `cancel` is checked at every step. init: a loaded
    `Generator` to fine-tune (its CLIP must be `clip`; its model shapes replace the config's).
    """
    config = copy.deepcopy(config or GeneratorTrainConfig())  # the device, widths and epochs are set on a copy
    if init is not None:
        init.check_clip(clip)
        config.from_generator(init)
    out = Path(out).expanduser()
    device = str(torch.device(device))
    config.autoencoder_training.device = config.flow_training.device = device
    config.flow = FlowConfig(**{**config.flow.__dict__, "latent_dim": config.autoencoder.latent_dim,
                                "condition_dim": clip.embed_dim})
    seconds, resumed = {}, []

    def staged(stage: str):
        return lambda step, total, **m: progress(step, total, stage=stage, **m)

    started = time.perf_counter()
    library = read_library(library_dir, config.autoencoder.voxel_resolution, config.max_shapes,
                           staged("library"), cancel)
    seconds["library"] = time.perf_counter() - started
    if epochs is not None:
        config.with_epochs(epochs, len(library.meshes))
    parts = parts_dir(out)
    _check_parts(parts, library, clip.spec, resume)

    started = time.perf_counter()
    ae_path = parts / "autoencoder.pt"
    if resume and ae_path.is_file():
        resumed.append("autoencoder")
    autoencoder, ae_losses = train_autoencoder(
        library.voxels, config.autoencoder, config.autoencoder_training, checkpoint_path=ae_path, resume=resume,
        progress=staged("autoencoder"), cancel=cancel, init=init.autoencoder if init is not None else None)
    seconds["autoencoder"] = time.perf_counter() - started
    with torch.no_grad():
        grids = torch.from_numpy(library.voxels).to(device)
        latents = torch.cat([autoencoder.encode(chunk) for chunk in torch.split(grids, 32)]).cpu()
    iou = reconstruction_iou(autoencoder, library.voxels[:64])

    started = time.perf_counter()
    views_path = parts / "views.pt"
    notes = []
    if resume and views_path.is_file():
        saved = torch.load(views_path, weights_only=True)
        conditions, texts, source = saved["conditions"], saved["texts"], saved["source"]
        resumed.append("views")
    else:
        conditions, source = None, "rendered"
        if config.index_db:
            conditions, why = index_view_embeddings(config.index_db, library, clip)
            source, notes = ("index", []) if conditions is not None else ("rendered", [f"index not reused: {why}"])
        if conditions is None:
            conditions = view_embeddings(library.meshes, clip, config.views, device, staged("views"), cancel)
        with torch.no_grad():
            texts = text_embeddings(library.texts(), clip, conditions)
        save_atomic({"conditions": conditions, "texts": texts, "source": source}, views_path)
    seconds["views"] = time.perf_counter() - started

    started = time.perf_counter()
    flow_path = parts / "flow.pt"
    if resume and flow_path.is_file():
        resumed.append("flow")
    flow, flow_losses = train_flow(latents, conditions, config.flow, config.flow_training, texts=texts,
                                   checkpoint_path=flow_path, resume=resume, progress=staged("flow"), cancel=cancel,
                                   init=init.flow if init is not None else None)
    seconds["flow"] = time.perf_counter() - started

    report = TrainGeneratorReport(
        shapes=len(library.meshes), categories=library.category_counts(), skipped=library.skipped,
        autoencoder_loss=ae_losses[-1], flow_loss=flow_losses[-1], reconstruction_iou=float(sum(iou) / len(iou)),
        stage_seconds={k: round(v, 3) for k, v in seconds.items()}, resumed=resumed, conditions=source, notes=notes)
    library_info = {"fingerprint": library.fingerprint, "root": str(library.root), "shapes": len(library.meshes),
                    "categories": library.category_counts()}
    train = {"autoencoder_steps": config.autoencoder_training.steps, "flow_steps": config.flow_training.steps,
             "views": int(conditions.shape[1]), "texts": int(texts.shape[1]), "conditions": source,
             "init": str(init.path) if init is not None and init.path else None, "autoencoder_loss": report.autoencoder_loss,
             "flow_loss": report.flow_loss, "reconstruction_iou": report.reconstruction_iou}
    save_generator(out, autoencoder, flow, clip.spec, library_info, train)
    shutil.rmtree(parts, ignore_errors=True)
    return report
