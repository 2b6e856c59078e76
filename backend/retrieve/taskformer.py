"""TASK-former (Sangkloy, Jitkrittum, Yang and Hays, "A Sketch Is Worth a Thousand Words", ECCV 2022): a CLIP
fine-tuned so that a sketch and a caption together find an image.

- Image encoder: the CLIP image tower. Sketch encoder: a separate copy of the same tower, initialised from it
  (the paper's figure has three encoders, each started from CLIP; sketches are line drawings on white, a
  domain of their own, so the copy may specialise without pulling the image tower along).
  `TaskFormerConfig.share_image_tower` uses one tower for both instead.
- Text encoder: the CLIP text tower, on CLIP BPE tokens.
- Photo encoder (`TaskFormerConfig.photo_tower`, issue 20): photo queries (cut out by saliency or a prompt) through
  a separate copy of the image tower, trained by the photo term (`train.py`) to find a shape's views from its
  cut-out photo, so the views', sketches' and texts' embeddings do not move for photos. Without it, photos go
  through the image tower (`encode_photo` == `encode_image`).
- Query: feature addition, q = normalise(normalise(s) + normalise(t)), the variant the paper found best (the
  seed's Table 1). No new projection sits in the embedding path, so an untrained TaskFormer embeds exactly
  as the CLIP does zero-shot.
- Auxiliary heads (training only): one two-layer MLP classifier shared by the image, sketch and text
  embeddings (shared, so the three land in one class-separable space), and a small GPT-style caption decoder:
  causal transformer blocks whose first input is the query embedding (a prefix token), predicting the
  caption's tokens. The decoder predicts over a compact vocabulary, the BPE tokens of the training captions
  (a few hundred for the world) plus <unk>, instead of CLIP's 49408, which would make its output layer the
  largest cost of a CPU training step.

Checkpoints are plain dicts of tensors and JSON types (loadable with `torch.load(..., weights_only=True)`) and
self-contained: the fine-tuned CLIP weights travel with them, so `load_taskformer` needs no other file. They
record the CLIP spec the model was built from.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from backend.checkpoints import save_atomic
from backend.errors import InvalidInputError
from backend.models.clip import ClipModel, clip_from_config, parse_clip_spec

CHECKPOINT_FORMAT = "atelier-taskformer-1"
"""The `format` entry of a TASK-former checkpoint."""
UNK = 0
"""Decoder-vocabulary index of tokens outside the compact vocabulary."""


@dataclass
class TaskFormerConfig:
    """The heads TaskFormer adds to a CLIP, and how its towers are arranged."""

    class_names: tuple[str, ...] = ()
    """Classes of the classification head, in label-index order (the world: its categories)."""
    decoder_vocab: tuple[int, ...] = ()
    """CLIP BPE token ids the caption decoder predicts (`build_vocab`); index 0 of its output is <unk>."""
    share_image_tower: bool = False
    """Encode sketches with the image tower itself instead of a separate copy of it."""
    photo_tower: bool = False
    """Encode photo queries with a separate copy of the image tower (`encode_photo`) instead of the image tower."""
    class_hidden: int = 128
    """Hidden width of the two-layer classification MLP."""
    decoder_width: int = 128
    """Token width of the caption decoder (the seed's replication: 512)."""
    decoder_layers: int = 2
    """Causal transformer blocks in the caption decoder (the seed's replication: 6)."""
    decoder_heads: int = 4
    """Attention heads per decoder block (the seed's replication: 8)."""

    def __post_init__(self) -> None:
        self.class_names = tuple(str(c) for c in self.class_names)
        self.decoder_vocab = tuple(int(t) for t in self.decoder_vocab)
        for name in ("class_hidden", "decoder_width", "decoder_layers", "decoder_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TaskFormerConfig.{name} must be an integer >= 1, got {value!r}")
        if self.decoder_width % self.decoder_heads:
            raise ValueError(f"TaskFormerConfig.decoder_width ({self.decoder_width}) must be a multiple of "
                             f"decoder_heads ({self.decoder_heads})")
        if len(self.class_names) < 2:
            raise ValueError("TaskFormerConfig.class_names needs two or more classes for the classification head")
        if not self.decoder_vocab:
            raise ValueError("TaskFormerConfig.decoder_vocab is empty; build it from captions with build_vocab")

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def build_vocab(tokens: torch.Tensor, eot_token: int) -> tuple[int, ...]:
    """The sorted BPE ids occurring in `tokens` ([N, L] int64 CLIP tokens) up to each row's end token."""
    valid = _valid_positions(tokens, eot_token)
    return tuple(sorted(set(tokens[valid].tolist())))


def _valid_positions(tokens: torch.Tensor, eot_token: int) -> torch.Tensor:
    """[N, L] bool: positions up to and including each row's end-of-text token."""
    is_eot = tokens == eot_token
    has_eot = is_eot.any(dim=1, keepdim=True)
    last = torch.full_like(tokens[:, :1], tokens.shape[1] - 1)  # no end token: the row is all caption
    end = torch.where(has_eot, is_eot.int().argmax(dim=1, keepdim=True), last)
    return torch.arange(tokens.shape[1], device=tokens.device)[None] <= end


class ClassHead(nn.Module):
    """Two-layer MLP: [B, D] embedding -> [B, C] class logits."""

    def __init__(self, embed_dim: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(embed_dim, hidden), nn.GELU(), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CaptionDecoder(nn.Module):
    """A small GPT: the query embedding as a prefix token, then the caption tokens, under a causal mask.

    forward(query [B, D], tokens [B, L] CLIP ids) -> (logits [B, L', V], targets [B, L']) where output j
    predicts token j + 1 (from the prefix and tokens 0..j), L' = the longest caption in the batch minus one,
    and targets hold decoder-vocabulary indices with -100 after each caption's end token.
    """

    def __init__(self, embed_dim: int, vocab: Sequence[int], width: int, layers: int, heads: int,
                 context_length: int, vocab_size: int, eot_token: int) -> None:
        super().__init__()
        ids = torch.tensor(list(vocab), dtype=torch.int64)
        if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
            raise ValueError(f"decoder vocabulary ids must be in [0, {vocab_size}), got {ids.min()}..{ids.max()}")
        lookup = torch.full((vocab_size,), UNK, dtype=torch.int64)
        lookup[ids] = torch.arange(1, len(ids) + 1)
        self.register_buffer("lookup", lookup, persistent=False)  # BPE id -> decoder index (0: <unk>)
        self.eot_token = int(eot_token)
        size = len(ids) + 1
        self.prefix = nn.Linear(embed_dim, width)
        self.embed = nn.Embedding(size, width)
        self.positions = nn.Parameter(torch.randn(context_length, width) * 0.01)
        block = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, size, bias=False)
        self.head.weight = self.embed.weight  # tied input and output embeddings, as in GPT-2
        nn.init.normal_(self.embed.weight, std=0.02)  # GPT-2's init: logits start near uniform

    def forward(self, query: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = _valid_positions(tokens, self.eot_token)
        length = int(valid.sum(dim=1).max())  # trim the padding every row shares
        tokens, valid = tokens[:, :length], valid[:, :length]
        ids = self.lookup[tokens]
        x = torch.cat([self.prefix(query)[:, None], self.embed(ids[:, :-1])], dim=1)
        x = x + self.positions[:length]
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=x.device, dtype=x.dtype)
        hidden = self.norm(self.blocks(x, mask=mask, is_causal=True))
        logits = self.head(hidden[:, 1:])  # the prefix's own output would predict the start token: skipped
        targets = ids[:, 1:].masked_fill(~valid[:, 1:], -100)
        return logits, targets


class TaskFormer(nn.Module):
    """Sketch + text -> image retrieval embeddings from a CLIP (module docstring).

    Every `encode_*` returns [B, D] float32 unit rows in the CLIP's joint space (D = `embed_dim`); images and
    sketches are [B, 3, H, W] float in [0, 1] (any size: the CLIP's preprocessing resizes and crops), tokens
    [B, context_length] int64 from `tokenize`.
    """

    def __init__(self, clip: ClipModel, config: TaskFormerConfig) -> None:
        super().__init__()
        self.config = config
        self.clip_spec = clip.spec
        # A private copy: the ClipModel load_clip returns is cached and shared with other jobs.
        self.clip_model = copy.deepcopy(clip.model)
        # The fine-tuned CLIP as a ClipModel (preprocessing, tokenizer, image and text towers).
        self.clip = dataclasses.replace(clip, model=self.clip_model)
        self.sketch_visual = None if config.share_image_tower else copy.deepcopy(self.clip_model.visual)
        self.photo_visual = copy.deepcopy(self.clip_model.visual) if config.photo_tower else None
        embed_dim = clip.embed_dim
        self.classifier = ClassHead(embed_dim, config.class_hidden, len(config.class_names))
        tokenizer = clip.tokenizer
        self.decoder = CaptionDecoder(embed_dim, config.decoder_vocab, config.decoder_width, config.decoder_layers,
                                      config.decoder_heads, clip.context_length,
                                      int(clip.model_cfg["text_cfg"].get("vocab_size", 49408)),
                                      int(tokenizer.eot_token_id))

    # ------------------------------------------------------------------------------------------ embeddings

    @property
    def device(self) -> torch.device:
        return next(self.clip_model.parameters()).device

    @property
    def embed_dim(self) -> int:
        return self.clip.embed_dim

    @property
    def logit_scale(self) -> torch.Tensor:
        """1 / temperature of the embedding loss: the CLIP's own (learnt) scale, exp of its log."""
        return self.clip_model.logit_scale.exp()

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """texts -> [N, context_length] int64 CLIP tokens on this model's device."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts) or len(texts) == 0:
            raise InvalidInputError("tokenize takes a non-empty list of strings", hint="wrap a single text: [text]")
        return self.clip.tokenizer(list(texts)).to(self.device)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, 3, H, W] float in [0, 1] (shaded views, photos) -> [B, D] unit rows."""
        return self.clip.encode_image(images, normalize=True)

    def encode_sketch(self, sketches: torch.Tensor) -> torch.Tensor:
        """sketches: [B, 3, H, W] float in [0, 1], dark lines on white -> [B, D] unit rows."""
        if self.sketch_visual is None:
            return self.encode_image(sketches)
        return F.normalize(self.sketch_visual(self.clip.preprocess(sketches)), dim=-1)

    def encode_photo(self, photos: torch.Tensor) -> torch.Tensor:
        """photos: [B, 3, H, W] float in [0, 1], photo queries (cut out on white) -> [B, D] unit rows: the photo
        tower when the model has one, else the image tower."""
        if self.photo_visual is None:
            return self.encode_image(photos)
        return F.normalize(self.photo_visual(self.clip.preprocess(photos)), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: [B, context_length] int64 CLIP tokens -> [B, D] unit rows."""
        if tokens.ndim != 2 or tokens.dtype != torch.int64:
            raise InvalidInputError(f"tokens must be [B, L] int64, got {tuple(tokens.shape)} {tokens.dtype}",
                                    hint="make them with TaskFormer.tokenize(texts)")
        return self.clip_model.encode_text(tokens.to(self.device), normalize=True)

    def encode_query(self, sketch: torch.Tensor | None = None, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Feature addition: normalise(encode_sketch(sketch) + encode_text(tokens)); either alone when the
        other is None. sketch: [B, 3, H, W] float in [0, 1]; tokens: [B, L] int64."""
        if sketch is None and tokens is None:
            raise InvalidInputError("a query needs a sketch, a text or both")
        if tokens is None:
            return self.encode_sketch(sketch)
        if sketch is None:
            return self.encode_text(tokens)
        return combine(self.encode_sketch(sketch), self.encode_text(tokens))

    # ------------------------------------------------------------------------------------------ training

    def forward(self, images: torch.Tensor, sketches: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything the training losses need for a batch of (image, sketch, caption) triples.

        Returns {"image", "sketch", "text", "query"}: [B, D] unit rows; "class_logits": ([B, C] x 3, for
        image, sketch, text); "caption_logits" [B, L', V] and "caption_targets" [B, L'] (`CaptionDecoder`).
        """
        image = self.encode_image(images)
        sketch = self.encode_sketch(sketches)
        text = self.encode_text(tokens)
        query = combine(sketch, text)
        caption_logits, caption_targets = self.decoder(query, tokens.to(self.device))
        return {"image": image, "sketch": sketch, "text": text, "query": query,
                "class_logits": (self.classifier(image), self.classifier(sketch), self.classifier(text)),
                "caption_logits": caption_logits, "caption_targets": caption_targets}

    def train(self, mode: bool = True) -> "TaskFormer":
        # The CLIP towers stay in eval mode: BatchNorm keeps the statistics CLIP learnt (fine-tuning batches
        # are small and one-domain), and a run is reproducible whether or not it was interrupted.
        super().train(mode)
        self.clip_model.eval()
        for tower in (self.sketch_visual, self.photo_visual):
            if tower is not None:
                tower.eval()
        return self


def combine(sketch: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Feature addition of two [B, D] embeddings: normalise(normalise(sketch) + normalise(text))."""
    return F.normalize(F.normalize(sketch, dim=-1) + F.normalize(text, dim=-1), dim=-1)


# ---------------------------------------------------------------------------------------------- fine-tuning


def _tower_blocks(visual: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    """(blocks in order, modules/params always trained with the tower's last blocks) of a CLIP image tower."""
    if hasattr(visual, "layer4"):  # ModifiedResNet: four stages, then the attention pool (its projection)
        return [visual.layer1, visual.layer2, visual.layer3, visual.layer4], [visual.attnpool]
    blocks = list(visual.transformer.resblocks)  # VisionTransformer
    head = [m for m in (getattr(visual, "attn_pool", None), visual.ln_post) if m is not None]
    return blocks, head


def set_trainable(model: TaskFormer, train_layers: int) -> list[str]:
    """Freezes the CLIP towers except their last `train_layers` blocks (ResNet stages or transformer blocks)
    and their output projections; -1 trains everything. The heads, the decoder and the temperature are always
    trained. Returns the names of the trainable parameters."""
    if not isinstance(train_layers, int) or train_layers < -1:
        raise ValueError(f"train_layers must be an integer >= -1, got {train_layers!r}")
    model.requires_grad_(train_layers == -1)
    model.classifier.requires_grad_(True)
    model.decoder.requires_grad_(True)
    clip_model = model.clip_model
    clip_model.logit_scale.requires_grad_(True)
    if train_layers != -1:
        towers = [clip_model.visual] + [t for t in (model.sketch_visual, model.photo_visual) if t is not None]
        for visual in towers:
            blocks, head = _tower_blocks(visual)
            for module in blocks[len(blocks) - train_layers:] if train_layers else []:
                module.requires_grad_(True)
            for module in head:
                module.requires_grad_(True)
            if isinstance(getattr(visual, "proj", None), nn.Parameter):
                visual.proj.requires_grad_(True)
        text_blocks = list(clip_model.transformer.resblocks)
        for module in text_blocks[len(text_blocks) - train_layers:] if train_layers else []:
            module.requires_grad_(True)
        clip_model.ln_final.requires_grad_(True)
        projection = clip_model.text_projection
        if isinstance(projection, nn.Parameter):
            projection.requires_grad_(True)
        elif isinstance(projection, nn.Module):
            projection.requires_grad_(True)
    return [name for name, p in model.named_parameters() if p.requires_grad]


# ---------------------------------------------------------------------------------------------- checkpoints


def canonical_clip_spec(spec: str) -> str:
    """The form `load_clip` records for `spec` ('domain', 'ViT-B-32:openai', an absolute path); the text itself
    when it does not parse here (a recorded path that has since moved)."""
    try:
        return parse_clip_spec(spec).canonical
    except InvalidInputError:
        return spec.strip()


def check_clip_spec(recorded: str, requested: str | None, what: str) -> str:
    """The CLIP spec to use with a checkpoint or database recorded with `recorded`: `requested` must name the
    same CLIP (or be None); raises InvalidInputError otherwise. Returns the recorded spec."""
    if requested is not None and canonical_clip_spec(requested) != canonical_clip_spec(recorded):
        raise InvalidInputError(f"{what} was built from the CLIP {recorded!r}, not {requested!r}",
                                hint=f"drop --clip (the recorded CLIP is the default) or pass --clip {recorded}")
    return recorded


def save_checkpoint(path: str | os.PathLike, model: TaskFormer, optimizer: torch.optim.Optimizer | None = None,
                    step: int = 0, config: Any = None, clip_spec: str | None = None,
                    extra: dict | None = None) -> Path:
    """Writes a TASK-former checkpoint atomically; returns its path.

    The file is a dict {"format": "atelier-taskformer-1", "model": TaskFormerConfig as a dict, "clip": {"spec",
    "name", "model_cfg", "image_size", "mean", "std"}, "state_dict" (CPU tensors), "optimizer" (its state dict
    or None), "step", "train" (the training config as a dict, or None), "extra"}: tensors and JSON types only.
    """
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    clip = model.clip
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = asdict(config)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": model.config.to_dict(),
        "clip": {"spec": clip_spec or model.clip_spec, "name": clip.name,
                 "model_cfg": json.loads(json.dumps(clip.model_cfg)), "image_size": int(clip.image_size),
                 "mean": [float(v) for v in clip.mean], "std": [float(v) for v in clip.std]},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": _to_cpu(optimizer.state_dict()) if optimizer is not None else None,
        "step": int(step),
        "train": json.loads(json.dumps(config)) if config is not None else None,
        "extra": json.loads(json.dumps(extra or {})),
    }
    return save_atomic(payload, path)


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The dict `save_checkpoint` wrote; InvalidInputError when the file is missing or not a TASK-former."""
    path = Path(path).expanduser()
    hint = "train one with `atelier train-retrieval --data DIR --out CKPT`"
    if not path.is_file():
        raise InvalidInputError(f"TASK-former checkpoint {path} does not exist", hint=hint)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as exc:  # a text file makes torch's unpickler raise KeyError or IndexError, not only OSError
        from backend.checkpoints import unreadable_reason

        raise InvalidInputError(f"{path} is not a TASK-former checkpoint (unreadable: {unreadable_reason(exc)})",
                                hint=hint) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise InvalidInputError(f"{path} is not a TASK-former checkpoint (format {found!r}, expected "
                                f"{CHECKPOINT_FORMAT!r})", hint=hint)
    missing = [k for k in ("model", "clip", "state_dict", "step") if k not in ckpt]
    if missing:
        raise InvalidInputError(f"{path} lacks {', '.join(missing)}", hint=hint)
    return ckpt


def model_from_checkpoint(ckpt: dict, device: str | torch.device = "cpu", source: str = "the checkpoint") -> TaskFormer:
    """Rebuilds the TaskFormer in a `read_checkpoint` dict (weights loaded strictly), in eval mode."""
    info = ckpt["clip"]
    try:
        config = TaskFormerConfig(**ckpt["model"])
        clip = clip_from_config(info["model_cfg"], name=info["name"], mean=info["mean"], std=info["std"])
        clip = dataclasses.replace(clip, spec=info["spec"], image_size=int(info["image_size"]))
        model = TaskFormer(clip, config)
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise InvalidInputError(f"{source} does not hold a TASK-former this Atelier can build: {first[:300]}",
                                hint="train it again with this version of Atelier") from exc
    return model.to(device).eval()


def load_taskformer(path: str | os.PathLike, device: str | torch.device = "cpu") -> TaskFormer:
    """The TaskFormer saved at `path`, on `device`, in eval mode with frozen parameters (for retrieval)."""
    model = model_from_checkpoint(read_checkpoint(path), device, source=str(path))
    return model.requires_grad_(False)


def checkpoint_clip_spec(path: str | os.PathLike) -> str:
    """The CLIP spec a TASK-former checkpoint records."""
    return str(read_checkpoint(path)["clip"]["spec"])


__all__ = [
    "CHECKPOINT_FORMAT", "CaptionDecoder", "ClassHead", "TaskFormer", "TaskFormerConfig", "build_vocab",
    "canonical_clip_spec", "check_clip_spec", "checkpoint_clip_spec", "combine", "load_taskformer",
    "model_from_checkpoint", "read_checkpoint", "save_checkpoint", "set_trainable",
]
