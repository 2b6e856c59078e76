"""Training the occupancy autoencoder on voxelised shapes (CLIP-Forge stage 1).

Checkpoints are plain dicts of tensors, numbers and strings (`torch.load(..., weights_only=True)` reads
them): {"kind", "model_config", "train_config", "step", "model", "optimizer", "losses"}.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from backend.checkpoints import cosine_factor, read_model_checkpoint, resume_training, save_model_checkpoint
from backend.errors import InvalidInputError
from backend.generate.decode import decode_grid
from backend.generate.occupancy import (OccupancyAutoencoder, OccupancyAutoencoderConfig, OccupancySampler, stored_config,
                                        voxel_iou)
from backend.geometry.mesh import Mesh
from backend.geometry.voxelize import voxelize_normalized
from backend.progress import CancelToken, ProgressFn, no_progress
from backend.train_loop import TrainLoop, run_training_loop

CHECKPOINT_KIND = "atelier.occupancy_autoencoder"


@dataclass
class AutoencoderTrainConfig:
    """How the autoencoder is trained."""

    steps: int = 20000
    """Optimiser steps."""
    batch_size: int = 32
    """Shapes per step (all of them when there are fewer)."""
    points_per_shape: int = 2048
    """Occupancy points sampled per shape per step."""
    near_fraction: float = 0.6
    """Share of the points drawn next to the surface (the rest are uniform in the cube)."""
    near_sigma: float = 0.02
    """Standard deviation of the Gaussian jitter added to near-surface points (voxel-frame units)."""
    learning_rate: float = 1e-3
    """Adam learning rate (cosine-decayed to 5% over `steps`)."""
    seed: int = 0
    """Seeds the weights, the shape order and the point samples."""
    device: str = "cpu"
    """Torch device to train on."""
    checkpoint_every: int = 0
    """Write the checkpoint every this many steps (0: only at the end)."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "points_per_shape"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")


def voxelize_meshes(meshes: list[Mesh], resolution: int) -> np.ndarray:
    """Each mesh normalised to the unit sphere and voxelised: bool [N, R, R, R]."""
    if not meshes:
        raise InvalidInputError("no shapes to voxelise", "give the trainer at least one mesh")
    return np.stack([voxelize_normalized(mesh, resolution)[0] for mesh in meshes])


def train_autoencoder(
    voxels: np.ndarray,
    model_config: OccupancyAutoencoderConfig | None = None,
    config: AutoencoderTrainConfig | None = None,
    *,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    init: OccupancyAutoencoder | None = None,
) -> tuple[OccupancyAutoencoder, list[float]]:
    """Fits an autoencoder to voxel grids: voxels bool [N, R, R, R] with R = model_config.voxel_resolution.

    Each step encodes a batch of grids and scores the decoder's logits at sampled points with binary
    cross-entropy. progress(step, total, loss=...) is called after every step; `cancel.check()` runs
    before each (JobCancelled propagates; the last checkpoint written stays). Returns (the model in
    eval mode on config.device, the loss of every step). With `resume`, an existing checkpoint at
    `checkpoint_path` restores the weights, optimiser state, step and losses and training goes on to
    `config.steps` (the batch order after the resumed step is drawn afresh from the seed and step). init: a
    trained autoencoder of the same config to start from (fine-tuning).
    """
    model_config = model_config or OccupancyAutoencoderConfig()
    config = config or AutoencoderTrainConfig()
    voxels = np.asarray(voxels, dtype=bool)
    r = model_config.voxel_resolution
    if voxels.ndim != 4 or tuple(voxels.shape[1:]) != (r, r, r) or len(voxels) == 0:
        raise InvalidInputError(f"training voxels must be [N, {r}, {r}, {r}], got {voxels.shape}",
                                f"voxelise the shapes at the model's resolution {r}")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = torch.device(config.device)
    model = OccupancyAutoencoder(model_config).to(device)
    if init is not None:
        model.load_state_dict(init.state_dict())
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    start, losses = resume_training(checkpoint_path if resume else None, CHECKPOINT_KIND, model, optimizer, model_config)
    if start:
        rng = np.random.default_rng([config.seed, start])
    samplers = [OccupancySampler(grid, config.near_fraction, config.near_sigma) for grid in voxels]
    grids = torch.from_numpy(voxels).to(device)
    batch = min(config.batch_size, len(voxels))
    model.train()
    state = {"order": rng.permutation(len(voxels)), "cursor": 0}

    def loss_at(step: int) -> torch.Tensor:
        if state["cursor"] + batch > len(state["order"]):
            state["order"], state["cursor"] = rng.permutation(len(voxels)), 0
        chosen = state["order"][state["cursor"]:state["cursor"] + batch]
        state["cursor"] += batch
        samples = [samplers[i].sample(config.points_per_shape, rng) for i in chosen]
        points = torch.from_numpy(np.stack([p for p, _ in samples])).to(device)
        labels = torch.from_numpy(np.stack([y for _, y in samples])).to(device)
        logits = model(grids[torch.from_numpy(chosen).to(device)], points)
        return F.binary_cross_entropy_with_logits(logits, labels)

    def save(step: int) -> None:
        save_checkpoint(checkpoint_path, model, optimizer, config, step, losses)

    run_training_loop(optimizer, loss_at, TrainLoop(
        steps=config.steps, start=start, lr_at=lambda step, group: config.learning_rate * cosine_factor(step, config.steps),
        checkpoint_every=config.checkpoint_every, save=save if checkpoint_path is not None else None,
        on_record=lambda record: losses.append(record["loss"])), progress=progress, cancel=cancel)
    if checkpoint_path is not None and start < config.steps:
        save_checkpoint(checkpoint_path, model, optimizer, config, config.steps, losses)
    return model.eval(), losses


def save_checkpoint(path: str | Path, model: OccupancyAutoencoder, optimizer, config: AutoencoderTrainConfig,
                    step: int, losses: list[float]) -> None:
    """Writes the plain-dict checkpoint (module docstring) atomically: a crash never leaves half a file."""
    save_model_checkpoint(path, CHECKPOINT_KIND, model, model.config, config, optimizer, step, losses)


def load_autoencoder(path: str | Path, device: str = "cpu") -> OccupancyAutoencoder:
    """The autoencoder saved at `path` (weights_only load), in eval mode on `device`."""
    state = read_model_checkpoint(
        path, CHECKPOINT_KIND,
        missing=(f"no autoencoder checkpoint at {path}", "train one with train_autoencoder first"),
        wrong=(f"{path} is not an occupancy autoencoder checkpoint", "pass the file written by train_autoencoder"))
    model = OccupancyAutoencoder(stored_config(state["model_config"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval()


@torch.no_grad()
def reconstruction_iou(model: OccupancyAutoencoder, voxels: np.ndarray, threshold: float = 0.5) -> list[float]:
    """Per-shape IoU of the autoencoder's reconstruction at the cell centres: voxels bool [N, R, R, R]."""
    device = next(model.parameters()).device
    latents = model.encode(torch.from_numpy(np.asarray(voxels, dtype=bool)).to(device))
    level = float(np.log(threshold / (1.0 - threshold)))
    return [voxel_iou(decode_grid(model, z, voxels.shape[1]) > level, grid) for z, grid in zip(latents, voxels)]
