"""Training the conditional latent flow on (shape latent, CLIP embedding) pairs (CLIP-Forge stage 2).

Checkpoints are plain dicts of tensors, numbers and strings (`torch.load(..., weights_only=True)` reads
them): {"kind", "model_config", "train_config", "step", "model", "optimizer", "losses"}.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from backend.checkpoints import cosine_factor, read_model_checkpoint, resume_training, save_model_checkpoint
from backend.errors import InvalidInputError
from backend.generate.flow import ConditionalRealNVP, FlowConfig
from backend.progress import CancelToken, ProgressFn, no_progress
from backend.train_loop import TrainLoop, run_training_loop

CHECKPOINT_KIND = "atelier.latent_flow"


@dataclass
class FlowTrainConfig:
    """How the flow is trained."""

    steps: int = 20000
    """Optimiser steps."""
    batch_size: int = 64
    """(latent, condition) pairs per step (all shapes when there are fewer; at least 2 for batch-norm)."""
    learning_rate: float = 1e-4
    """Adam learning rate (cosine-decayed to 5% over `steps`)."""
    text_fraction: float = 0.3
    """Share of each batch conditioned on one of the shape's text embeddings (a caption or a category prompt)
    instead of a view's image embedding, when texts are given. CLIP-Forge trains on image embeddings alone and
    samples from text ones, across CLIP's gap between the two. Measured on 2400 world shapes with a mean network:
    views only gave "a photo of a <category>" accuracy 0.86 (sofa 0.0) and held-out captions 0.90; 0.3 gave 1.0
    and 1.0, at a view-conditioned IoU of 0.667 against 0.682."""
    condition_noise: float = 0.0
    """Std of Gaussian noise added to each unit-length condition before the flow re-normalises it (0: none);
    widens what counts as near a training condition."""
    mean_weight: float = 1.0
    """Weight of the conditional mean network's squared error (per standardised latent entry) beside the NLL, when
    the flow has one (`FlowConfig.mean_hidden`)."""
    latent_noise: float = 0.0
    """Std of Gaussian noise added to the training latents each step (0: none); smooths a density fitted
    to few shapes."""
    seed: int = 0
    """Seeds the weights, the batch order, the view chosen per shape and the noise."""
    device: str = "cpu"
    """Torch device to train on."""
    checkpoint_every: int = 0
    """Write the checkpoint every this many steps (0: only at the end)."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.text_fraction <= 1.0:
            raise ValueError(f"text_fraction must be in [0, 1], got {self.text_fraction}")
        if self.condition_noise < 0:
            raise ValueError(f"condition_noise must be >= 0, got {self.condition_noise}")
        if self.latent_noise < 0:
            raise ValueError(f"latent_noise must be >= 0, got {self.latent_noise}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")


def train_flow(
    latents: torch.Tensor,
    conditions: torch.Tensor,
    model_config: FlowConfig | None = None,
    config: FlowTrainConfig | None = None,
    *,
    texts: torch.Tensor | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    init: ConditionalRealNVP | None = None,
) -> tuple[ConditionalRealNVP, list[float]]:
    """Fits p(latent | condition) by negative log-likelihood.

    latents: [N, D] float (the autoencoder's encodings); conditions: [N, C] float CLIP embeddings, or
    [N, V, C] with V views per shape, of which each step draws one per shape at random. texts: optional
    [N, T, C] text embeddings of each shape; a `config.text_fraction` share of each batch draws one of those
    instead of a view. init: a trained flow of the same shape to start from (fine-tuning). D and C must
    match model_config (its defaults when not given: 128, 512). The loss is the mean NLL per latent
    dimension in nats. progress(step, total, loss=...) is called after every step; `cancel.check()` runs
    before each. Returns (the flow in eval mode on config.device, the loss of every step). `resume` continues
    from an existing checkpoint at `checkpoint_path` as `train_autoencoder` does.
    """
    model_config = model_config or FlowConfig()
    config = config or FlowTrainConfig()
    latents = torch.as_tensor(latents, dtype=torch.float32)
    conditions = torch.as_tensor(conditions, dtype=torch.float32)
    d, c = model_config.latent_dim, model_config.condition_dim
    if latents.dim() != 2 or latents.shape[1] != d:
        raise InvalidInputError(f"latents must be [N, {d}], got {tuple(latents.shape)}",
                                f"encode the shapes with an autoencoder of latent_dim {d} or set FlowConfig.latent_dim")
    if len(latents) < 2:
        raise InvalidInputError(f"the flow needs at least 2 training latents, got {len(latents)}",
                                "batch-norm needs a batch of two or more; add shapes")
    if conditions.dim() == 2:
        conditions = conditions.unsqueeze(1)
    if conditions.dim() != 3 or conditions.shape[0] != len(latents) or conditions.shape[2] != c:
        raise InvalidInputError(
            f"conditions must be [{len(latents)}, {c}] or [{len(latents)}, V, {c}], got {tuple(conditions.shape)}",
            f"give one CLIP embedding (or V views) per latent, from a CLIP of width {c} "
            "or set FlowConfig.condition_dim")
    if texts is not None:
        texts = torch.as_tensor(texts, dtype=torch.float32)
        if texts.dim() != 3 or texts.shape[0] != len(latents) or texts.shape[2] != c:
            raise InvalidInputError(f"texts must be [{len(latents)}, T, {c}], got {tuple(texts.shape)}",
                                    "give each latent's text embeddings from the conditions' CLIP")
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    generator = torch.Generator().manual_seed(config.seed)
    flow = ConditionalRealNVP(model_config).to(device)
    if init is not None:
        flow.load_state_dict(init.state_dict())  # its standardisation too: the fine-tuned latents share its scale
    else:
        flow.standardize(latents)
    optimizer = torch.optim.Adam(flow.parameters(), lr=config.learning_rate)
    start, losses = resume_training(checkpoint_path if resume else None, CHECKPOINT_KIND, flow, optimizer, model_config)
    if start:
        generator.manual_seed(config.seed * 1_000_003 + start)
    n, views = len(latents), conditions.shape[1]
    batch = max(2, min(config.batch_size, n))
    state = {"order": torch.randperm(n, generator=generator), "cursor": 0}
    flow.train()

    def loss_at(step: int) -> torch.Tensor:
        if state["cursor"] + batch > n:
            state["order"], state["cursor"] = torch.randperm(n, generator=generator), 0
        chosen = state["order"][state["cursor"]:state["cursor"] + batch]
        state["cursor"] += batch
        view = torch.randint(views, (len(chosen),), generator=generator)
        cond = conditions[chosen, view]
        if texts is not None and config.text_fraction > 0:
            text = texts[chosen, torch.randint(texts.shape[1], (len(chosen),), generator=generator)]
            use_text = torch.rand(len(chosen), generator=generator) < config.text_fraction
            cond = torch.where(use_text[:, None], text, cond)
        if config.condition_noise:
            cond = F.normalize(cond, dim=1) + config.condition_noise * torch.randn(cond.shape, generator=generator)
        z = latents[chosen]
        if config.latent_noise:
            z = z + config.latent_noise * torch.randn(z.shape, generator=generator)
        z, cond = z.to(device), cond.to(device)
        loss = -flow.log_prob(z, cond).mean() / d
        return loss + config.mean_weight * flow.mean_error(z, cond).mean() if flow.mean_net is not None else loss

    def save(step: int) -> None:
        save_flow_checkpoint(checkpoint_path, flow, optimizer, config, step, losses)

    run_training_loop(optimizer, loss_at, TrainLoop(
        steps=config.steps, start=start, lr_at=lambda step, group: config.learning_rate * cosine_factor(step, config.steps),
        checkpoint_every=config.checkpoint_every, save=save if checkpoint_path is not None else None,
        on_record=lambda record: losses.append(record["loss"])), progress=progress, cancel=cancel)
    if checkpoint_path is not None and start < config.steps:
        save_flow_checkpoint(checkpoint_path, flow, optimizer, config, config.steps, losses)
    return flow.eval(), losses


def save_flow_checkpoint(path: str | Path, flow: ConditionalRealNVP, optimizer, config: FlowTrainConfig,
                         step: int, losses: list[float]) -> None:
    """Writes the plain-dict checkpoint (module docstring) atomically: a crash never leaves half a file."""
    save_model_checkpoint(path, CHECKPOINT_KIND, flow, flow.config, config, optimizer, step, losses)


def load_flow(path: str | Path, device: str = "cpu") -> ConditionalRealNVP:
    """The flow saved at `path` (weights_only load), in eval mode on `device`."""
    state = read_model_checkpoint(
        path, CHECKPOINT_KIND, missing=(f"no flow checkpoint at {path}", "train one with train_flow first"),
        wrong=(f"{path} is not a latent flow checkpoint", "pass the file written by train_flow"))
    flow = ConditionalRealNVP(FlowConfig(**state["model_config"]))
    flow.load_state_dict(state["model"])
    return flow.to(device).eval()
