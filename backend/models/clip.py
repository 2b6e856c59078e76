"""CLIP by spec (DESIGN §4 `--clip`): open_clip pretrained weights, local files, Atelier checkpoints, tiny models.

Spec forms, tried in this order:

- a special name from `CLIP_RESOLVERS`: `tiny` and `tiny-rn` (seeded random tiny models with a ViT and a
  ModifiedResNet image tower) and `domain` (the small CLIP trained on the procedural world, registered by
  the module that trains it);
- `MODEL:TAG`, an open_clip architecture and pretrained tag, e.g. `ViT-B-32:openai`: loaded from the local
  cache only, unless `allow_download=True` (see `backend.models.store`);
- `MODEL:/path/to/weights` (.pt/.bin/.safetensors, open_clip or OpenAI TorchScript format): that
  architecture with local weights;
- `/path/to/atelier_clip.pt`: an Atelier CLIP checkpoint (`save_clip_checkpoint`).

Models are cached per (spec, device) until `release_all()`. They come back in eval mode with frozen
parameters: gradients flow to input images (stylization), never into the shared model.
"""

from __future__ import annotations

import copy
import functools
import gc
import inspect
import json
import os
import threading
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.modified_resnet import ModifiedResNet
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import VisionTransformer

from backend.checkpoints import save_atomic
from backend.devices import resolve_device
from backend.errors import InvalidInputError, WeightsMissingError
from backend.models.catalogue import WeightsInfo, clean_tag, lookup
from backend.models.store import find_weights, missing_weights_error, pull

CHECKPOINT_FORMAT = "atelier-clip-1"
"""The `format` entry of an Atelier CLIP checkpoint file."""

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
"""File suffixes that make a spec a path even without a slash."""

_SIMPLE_TOKENIZER_VOCAB = 49408
_LOAD_CHECKPOINT_HAS_WEIGHTS_ONLY = "weights_only" in inspect.signature(open_clip.load_checkpoint).parameters


# ---------------------------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class TinyClipConfig:
    """A small open_clip CLIP for tests and plumbing: random, seeded, seconds to build on a CPU."""

    embed_dim: int = 64
    """Width of the joint image-text embedding."""
    image_size: int = 64
    """Input side in pixels (square); a multiple of 32 for a ResNet tower, of `patch_size` for a ViT."""
    vision_layers: int | tuple[int, int, int, int] = 2
    """An int builds a ViT with that many blocks; a 4-tuple a ModifiedResNet with those blocks per stage."""
    vision_width: int = 64
    """ViT token width, or the ResNet stem width (its last stage is 32x wider)."""
    vision_head_width: int = 16
    """Channels per attention head in the image tower (ResNet: in its attention pool)."""
    patch_size: int = 8
    """ViT patch side in pixels (ignored for a ResNet tower)."""
    text_width: int = 64
    """Text transformer width."""
    text_heads: int = 4
    """Text transformer attention heads."""
    text_layers: int = 2
    """Text transformer blocks."""
    context_length: int = 77
    """Tokens per text (open_clip's SimpleTokenizer pads or truncates to this)."""
    vocab_size: int = _SIMPLE_TOKENIZER_VOCAB
    """Token vocabulary; 49408 is the real BPE tokenizer's, so real prompts tokenize as for full CLIP."""
    seed: int = 0
    """Seed of the random initialisation: the same config always gives the same weights, on any device."""

    def model_cfg(self) -> dict[str, Any]:
        """The open_clip model config dict (`open_clip.CLIP(**cfg)`)."""
        vision: dict[str, Any] = {
            "image_size": self.image_size,
            "width": self.vision_width,
            "head_width": self.vision_head_width,
        }
        if isinstance(self.vision_layers, int):
            vision.update(layers=self.vision_layers, patch_size=self.patch_size)
        else:
            vision.update(layers=list(self.vision_layers), patch_size=None)
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": vision,
            "text_cfg": {
                "context_length": self.context_length,
                "vocab_size": self.vocab_size,
                "width": self.text_width,
                "heads": self.text_heads,
                "layers": self.text_layers,
            },
        }


TINY = TinyClipConfig()
"""`--clip tiny`: ViT image tower, 2 blocks of width 64, 8-px patches on 64-px images."""
TINY_RN = TinyClipConfig(vision_layers=(1, 1, 1, 1), vision_width=32, vision_head_width=64)
"""`--clip tiny-rn`: ModifiedResNet image tower, one bottleneck per stage, stem width 32, 64-px images."""


# ---------------------------------------------------------------------------------------------- the model


@dataclass(eq=False)
class ClipModel:
    """An open_clip CLIP with its preprocessing and tokenizer, ready to embed images and texts."""

    model: open_clip.CLIP
    """The open_clip model, in eval mode with `requires_grad=False` parameters, on its device."""
    spec: str
    """The canonical spec it was loaded from: 'ViT-B-32:openai', 'tiny', 'ViT-B-16:/abs/file.pt', '/abs/ckpt.pt'."""
    name: str
    """What the weights are: catalogue name, 'tiny', or the `spec_name` recorded in an Atelier checkpoint."""
    model_cfg: dict[str, Any]
    """The open_clip model config it was built from (saved in Atelier checkpoints)."""
    image_size: int
    """Side in pixels of the square images the image tower takes."""
    mean: tuple[float, float, float]
    """Per-channel RGB mean of the model's training preprocessing, for inputs in [0, 1]."""
    std: tuple[float, float, float]
    """Per-channel RGB standard deviation of the model's training preprocessing."""
    tokenizer: SimpleTokenizer
    """open_clip's BPE tokenizer: `tokenizer(list_of_str) -> [N, context_length] int64`."""
    embed_dim: int
    """Width of the joint embedding `encode_image` and `encode_text` return."""
    tower: Literal["vit", "resnet"]
    """The image tower: a VisionTransformer or a ModifiedResNet."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def context_length(self) -> int:
        return int(self.model_cfg["text_cfg"].get("context_length", 77))

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """The model's image preprocessing, differentiable (rendered views keep their gradients).

        images: [B, 3, H, W] float in [0, 1], RGB, any device.
        Returns [B, 3, S, S] float32 on the model's device, S = `image_size`: the shorter side resized to S
        (bilinear, antialiased when shrinking), the longer centre-cropped, then normalised with `mean`/`std`.
        """
        _check_images(images)
        x = images.to(device=self.device, dtype=torch.float32)
        height, width = x.shape[-2:]
        side = self.image_size
        if (height, width) != (side, side):
            scale = side / min(height, width)
            size = (max(side, round(height * scale)), max(side, round(width * scale)))
            # The antialiased kernel has CPU and CUDA backward passes; other backends get plain bilinear.
            antialias = scale < 1.0 and x.device.type in ("cpu", "cuda")
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=antialias)
            top, left = (size[0] - side) // 2, (size[1] - side) // 2
            x = x[..., top:top + side, left:left + side]
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """images: [B, 3, H, W] float in [0, 1] -> [B, embed_dim] float32 (unit length when `normalize`).

        Differentiable with respect to `images`.
        """
        return self.model.encode_image(self.preprocess(images), normalize=normalize)

    def encode_text(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        """texts: N strings -> [N, embed_dim] float32 (unit length when `normalize`); long texts are truncated."""
        if isinstance(texts, str) or not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
            raise InvalidInputError("encode_text takes a list of strings", hint="wrap a single prompt: [prompt]")
        if len(texts) == 0:
            raise InvalidInputError("encode_text got an empty list", hint="pass at least one prompt")
        tokens = self.tokenizer(list(texts)).to(self.device)
        return self.model.encode_text(tokens, normalize=normalize)


def _check_images(images: Any) -> None:
    if not isinstance(images, torch.Tensor):
        raise InvalidInputError(f"images must be a torch.Tensor, got {type(images).__name__}",
                                hint="pass a [B, 3, H, W] float tensor in [0, 1]")
    if images.ndim != 4 or images.shape[1] != 3:
        raise InvalidInputError(f"images must be [B, 3, H, W], got shape {tuple(images.shape)}",
                                hint="add a batch axis with images[None] / drop alpha with images[:, :3]")
    if not images.is_floating_point():
        raise InvalidInputError(f"images must be float in [0, 1], got {images.dtype}",
                                hint="convert uint8 images with images.float() / 255")


# ---------------------------------------------------------------------------------------------- building


def _check_supported(cfg: dict[str, Any], what: str) -> None:
    """Atelier loads CLIPs with open_clip's own towers and BPE tokenizer (the `ClipModel` contract)."""
    vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    problems = []
    if vision.get("timm_model_name"):
        problems.append(f"a timm image tower ({vision['timm_model_name']})")
    if text.get("hf_model_name") or cfg.get("custom_text"):
        problems.append("a custom text tower")
    if text.get("hf_tokenizer_name") or text.get("tokenizer_mode"):
        problems.append("a non-CLIP tokenizer")
    if "multimodal_cfg" in cfg:
        problems.append("a captioning decoder (CoCa)")
    if text.get("vocab_size", _SIMPLE_TOKENIZER_VOCAB) < _SIMPLE_TOKENIZER_VOCAB:
        problems.append(f"a text vocabulary of {text['vocab_size']} "
                        f"(the BPE tokenizer needs {_SIMPLE_TOKENIZER_VOCAB})")
    size = vision.get("image_size", 224)
    if isinstance(size, (list, tuple)) and len(set(size)) != 1:
        problems.append(f"non-square images {tuple(size)}")
    if problems:
        raise InvalidInputError(
            f"{what} uses {', '.join(problems)}, which Atelier does not load",
            hint="use an open_clip CLIP with the built-in ViT or ResNet image tower, "
                 "e.g. ViT-B-32:openai or RN50:openai",
        )


def _arch_cfg(arch: str, quick_gelu: bool) -> dict[str, Any]:
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise InvalidInputError(f"open_clip has no architecture {arch!r}", hint="see open_clip.list_models()")
    _check_supported(cfg, arch)
    if quick_gelu:
        cfg["quick_gelu"] = True
    return cfg


def _build(cfg: dict[str, Any], seed: int | None) -> open_clip.CLIP:
    """An open_clip CLIP from `cfg`, built on the CPU; `seed` fixes the init without touching the global RNG."""
    try:
        if seed is None:
            return open_clip.CLIP(**copy.deepcopy(cfg))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return open_clip.CLIP(**copy.deepcopy(cfg))
    except (TypeError, ValueError, KeyError, AssertionError) as exc:
        raise InvalidInputError(f"open_clip cannot build a CLIP from this config: {exc}",
                                hint="pass an open_clip CLIP model config (vision_cfg, text_cfg)") from exc


@functools.lru_cache(maxsize=8)
def _tokenizer(context_length: int) -> SimpleTokenizer:
    return SimpleTokenizer(context_length=context_length)


def _image_size(cfg: dict[str, Any]) -> int:
    size = cfg["vision_cfg"].get("image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def _wrap(model: open_clip.CLIP, cfg: dict[str, Any], *, spec: str, name: str, device: torch.device,
          mean: Sequence[float] = OPENAI_DATASET_MEAN, std: Sequence[float] = OPENAI_DATASET_STD,
          image_size: int | None = None) -> ClipModel:
    if isinstance(model.visual, VisionTransformer):
        tower: Literal["vit", "resnet"] = "vit"
    elif isinstance(model.visual, ModifiedResNet):
        tower = "resnet"
    else:
        raise InvalidInputError(f"{name} has a {type(model.visual).__name__} image tower",
                                hint="use a CLIP with a ViT or ModifiedResNet image tower")
    text_cfg = cfg["text_cfg"]
    if text_cfg.get("tokenizer_kwargs"):
        tokenizer = SimpleTokenizer(context_length=text_cfg.get("context_length", 77), **text_cfg["tokenizer_kwargs"])
    else:
        tokenizer = _tokenizer(int(text_cfg.get("context_length", 77)))
    model = model.to(device).eval().requires_grad_(False)
    return ClipModel(
        model=model,
        spec=spec,
        name=name,
        model_cfg=cfg,
        image_size=int(image_size or _image_size(cfg)),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        tokenizer=tokenizer,
        embed_dim=int(cfg["embed_dim"]),
        tower=tower,
    )


def clip_from_config(model_cfg: dict[str, Any], *, name: str, device: str | torch.device = "cpu", seed: int = 0,
                     mean: Sequence[float] = OPENAI_DATASET_MEAN,
                     std: Sequence[float] = OPENAI_DATASET_STD) -> ClipModel:
    """A randomly initialised (seeded) `ClipModel` from an open_clip model config; not cached.

    For training a CLIP from scratch (the domain CLIP): call `.model.train().requires_grad_(True)` first.
    """
    _check_supported(model_cfg, name)
    model = _build(model_cfg, seed=seed)
    return _wrap(model, copy.deepcopy(model_cfg), spec=name, name=name, device=_device(device), mean=mean, std=std)


def tiny_clip(config: TinyClipConfig = TINY, name: str = "tiny", device: str | torch.device = "cpu") -> ClipModel:
    """The seeded tiny CLIP `config` describes (the same weights for the same config, on any device)."""
    return clip_from_config(config.model_cfg(), name=name, device=device, seed=config.seed)


# ---------------------------------------------------------------------------------------------- weights files


def _is_torchscript(path: Path) -> bool:
    """Whether `path` is a TorchScript archive (OpenAI's original CLIP .pt files are)."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            return any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False  # not readable as an archive: the loader that follows says why


def _short(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines[:3]) or type(exc).__name__
    return text[:400] + ("..." if len(text) > 400 else "")


def _load_weights(model: open_clip.CLIP, path: Path, *, what: str,
                  error: type[InvalidInputError] | type[WeightsMissingError], hint: str) -> None:
    """Loads `path` (open_clip state dict, .safetensors, or OpenAI TorchScript) into `model`, strictly."""
    try:
        if _is_torchscript(path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                state = torch.jit.load(str(path), map_location="cpu").state_dict()
            # TorchScript exposes a few non-weights (ints, the causal mask) in its state dict.
            state = {k: v for k, v in state.items()
                     if k not in ("input_resolution", "context_length", "vocab_size") and not k.endswith("attn_mask")}
            model.load_state_dict(state, strict=True)
        else:
            # open_clip's loader: .safetensors by suffix, 'state_dict' wrappers, 'module.' prefixes,
            # third-party layouts and resized position embeddings.
            if _LOAD_CHECKPOINT_HAS_WEIGHTS_ONLY:
                open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
            else:  # older open_clip has no weights_only argument
                open_clip.load_checkpoint(model, str(path), strict=True)
    except Exception as exc:  # noqa: BLE001  any file at all may be named: loaders fail in many ways on junk
        reason = _short(exc)
        reason = reason if len(reason) <= 160 else reason[:157] + "..."
        raise error(f"could not load {path} as {what} ({type(exc).__name__}: {reason})", hint=hint) from exc


def verify_clip_weights(info: WeightsInfo, path: Path) -> None:
    """Raises InvalidInputError unless `path` loads into `info`'s open_clip architecture (used by import)."""
    arch = info.source.open_clip_model
    model = _build(_arch_cfg(arch, quick_gelu=info.quick_gelu), seed=None)
    _load_weights(model, path, what=f"{arch} weights", error=InvalidInputError,
                  hint=f"the file must hold {arch} weights (open_clip or OpenAI format) for {info.name}")


def save_clip_checkpoint(clip: ClipModel, path: str | os.PathLike, spec_name: str | None = None) -> Path:
    """Writes `clip` as an Atelier CLIP checkpoint that `load_clip(path)` reads back; returns the path.

    The file is a torch dict {"format": "atelier-clip-1", "model_cfg", "state_dict" (CPU tensors),
    "image_size", "mean", "std", "spec_name"}, loadable with `weights_only=True`. `spec_name` defaults to
    `clip.name` (e.g. 'domain').
    """
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_cfg": json.loads(json.dumps(clip.model_cfg)),  # tuples -> lists: plain types only
        "state_dict": {k: v.detach().cpu() for k, v in clip.model.state_dict().items()},
        "image_size": int(clip.image_size),
        "mean": [float(v) for v in clip.mean],
        "std": [float(v) for v in clip.std],
        "spec_name": spec_name or clip.name,
    }
    return save_atomic(payload, path)


def _load_atelier_checkpoint(path: Path, spec: str, device: torch.device) -> ClipModel:
    arch_hint = f"for open_clip or OpenAI weights name the architecture: --clip ViT-B-32:{path}"
    if _is_torchscript(path):
        raise InvalidInputError(f"{path} is a TorchScript file (OpenAI CLIP format), not an Atelier checkpoint",
                                hint=arch_hint)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  any file at all may be named: the unpickler fails in many ways on junk
        reason = _short(exc)
        reason = reason if len(reason) <= 160 else reason[:157] + "..."
        raise InvalidInputError(f"could not read {path}: not a checkpoint torch can read ({type(exc).__name__}: {reason})",
                                hint=arch_hint) from exc
    if not isinstance(ckpt, dict) or "format" not in ckpt:
        raise InvalidInputError(f"{path} is not an Atelier CLIP checkpoint (it has no 'format' entry)", hint=arch_hint)
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise InvalidInputError(f"{path} is a {ckpt['format']!r} checkpoint; this Atelier reads {CHECKPOINT_FORMAT!r}",
                                hint="upgrade Atelier, or re-save the model with save_clip_checkpoint")
    missing = [k for k in ("model_cfg", "state_dict", "image_size", "mean", "std", "spec_name") if k not in ckpt]
    if missing:
        raise InvalidInputError(f"{path} lacks {', '.join(missing)}",
                                hint="re-save the model with save_clip_checkpoint")
    cfg = ckpt["model_cfg"]
    _check_supported(cfg, str(path))
    model = _build(cfg, seed=None)
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise InvalidInputError(f"the weights in {path} do not fit its model_cfg: {_short(exc)}",
                                hint="re-save the model with save_clip_checkpoint") from exc
    return _wrap(model, cfg, spec=spec, name=str(ckpt["spec_name"]), device=device, mean=ckpt["mean"],
                 std=ckpt["std"], image_size=int(ckpt["image_size"]))


# ---------------------------------------------------------------------------------------------- resolvers

ClipResolver = Callable[[str, torch.device, bool], ClipModel]
"""`resolver(spec, device, allow_download) -> ClipModel` for a special `--clip` name."""

CLIP_RESOLVERS: dict[str, ClipResolver] = {}
"""Special `--clip` names. `domain` is replaced by the module that trains the domain CLIP."""


def register_clip_resolver(name: str, resolver: ClipResolver, replace: bool = False) -> None:
    """Makes `load_clip(name)` call `resolver`; a taken name is an error unless `replace=True`."""
    if name in CLIP_RESOLVERS and not replace:
        raise ValueError(f"CLIP name {name!r} is already registered; pass replace=True to override it")
    if ":" in name or "/" in name or "\\" in name:
        raise ValueError(f"CLIP name {name!r} would read as MODEL:TAG or a path; pick a plain name")
    CLIP_RESOLVERS[name] = resolver


def _domain_not_trained(spec: str, device: torch.device, allow_download: bool) -> ClipModel:
    raise WeightsMissingError("the domain CLIP is not on this machine (it is trained locally, never downloaded)",
                              hint="run `python build.py domain-clip` to train it")


register_clip_resolver("tiny", lambda spec, device, allow_download: tiny_clip(TINY, "tiny", device))
register_clip_resolver("tiny-rn", lambda spec, device, allow_download: tiny_clip(TINY_RN, "tiny-rn", device))
register_clip_resolver("domain", _domain_not_trained)


# ---------------------------------------------------------------------------------------------- load_clip


@dataclass(frozen=True)
class _Spec:
    kind: Literal["resolver", "pretrained", "arch_file", "checkpoint"]
    canonical: str
    arch: str = ""
    path: Path | None = None
    stamp: tuple[int, int] | None = None
    """(mtime_ns, size) of a file spec, so a rewritten file is not served from the cache."""


def _looks_like_path(text: str) -> bool:
    return ("/" in text or "\\" in text or text.startswith(("~", "."))
            or text.lower().endswith(WEIGHT_SUFFIXES))


def _file_spec(kind: Literal["arch_file", "checkpoint"], raw: str, arch: str = "") -> _Spec:
    path = Path(raw).expanduser()
    if not path.is_file():
        example = f"{arch}:/path/to/weights.pt" if arch else "/path/to/atelier_clip.pt"
        raise InvalidInputError(f"CLIP weights file {path} does not exist",
                                hint=f"check the path ({example}), or use a name such as ViT-B-32:openai")
    path = path.resolve()
    stat = path.stat()
    canonical = f"{arch}:{path}" if arch else str(path)
    return _Spec(kind, canonical, arch=arch, path=path, stamp=(stat.st_mtime_ns, stat.st_size))


def _usage_hint() -> str:
    return ("use MODEL:TAG (e.g. ViT-B-32:openai; `atelier models list`), MODEL:/path/to/weights.pt, "
            f"/path/to/atelier_clip.pt, or one of {', '.join(CLIP_RESOLVERS)}")


def parse_clip_spec(spec: str) -> _Spec:
    """Classifies a `--clip` value; raises InvalidInputError for unknown names and missing files."""
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidInputError("the CLIP spec is empty", hint=_usage_hint())
    spec = spec.strip()
    if spec in CLIP_RESOLVERS:
        return _Spec("resolver", spec)
    archs = open_clip.list_models()
    if spec in archs:
        tags = open_clip.list_pretrained_tags_by_model(spec)
        examples = ", ".join(f"{spec}:{t}" for t in tags[:4]) or "none known"
        raise InvalidInputError(f"CLIP spec {spec!r} names an architecture but no weights",
                                hint=f"add a pretrained tag ({examples}) or a local file ({spec}:/path/to/weights.pt)")
    if ":" in spec:
        arch, rest = spec.split(":", 1)
        if arch in archs:
            if open_clip.get_pretrained_cfg(arch, rest):
                return _Spec("pretrained", f"{arch}:{clean_tag(rest)}", arch=arch)
            if _looks_like_path(rest) or Path(rest).expanduser().exists():
                return _file_spec("arch_file", rest, arch=arch)
            tags = open_clip.list_pretrained_tags_by_model(arch)
            raise InvalidInputError(f"open_clip has no pretrained tag {rest!r} for {arch}",
                                    hint=f"known tags: {', '.join(tags) or 'none'}; "
                                         f"or a local file: {arch}:/path/to/weights.pt")
    if _looks_like_path(spec) or Path(spec).expanduser().is_file():
        return _file_spec("checkpoint", spec)
    if ":" in spec:
        raise InvalidInputError(f"unknown CLIP architecture {spec.split(':', 1)[0]!r} in {spec!r}", hint=_usage_hint())
    raise InvalidInputError(f"unknown CLIP spec {spec!r}", hint=_usage_hint())


def _device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else resolve_device(str(device))


_CACHE: dict[tuple, ClipModel] = {}
_LOCK = threading.RLock()  # re-entrant: a resolver may itself call load_clip


def load_clip(spec: str, device: str | torch.device = "cpu", allow_download: bool = False) -> ClipModel:
    """The CLIP `spec` names (module docstring), on `device`; cached per (spec, device).

    Offline unless `allow_download`: weights that are not in the local cache raise WeightsMissingError
    at once, naming the file, its size and `atelier models pull NAME`. Unknown names and missing files
    raise InvalidInputError.
    """
    parsed = parse_clip_spec(spec)
    dev = _device(device)
    key = (parsed.kind, parsed.canonical, parsed.stamp, str(dev))
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        clip = _load(parsed, dev, allow_download)
        _CACHE[key] = clip
        return clip


def _load(parsed: _Spec, device: torch.device, allow_download: bool) -> ClipModel:
    if parsed.kind == "resolver":
        return CLIP_RESOLVERS[parsed.canonical](parsed.canonical, device, allow_download)
    if parsed.kind == "checkpoint":
        assert parsed.path is not None
        return _load_atelier_checkpoint(parsed.path, parsed.canonical, device)
    if parsed.kind == "arch_file":
        assert parsed.path is not None
        # OpenAI's TorchScript files are all QuickGELU models; open_clip state dicts follow the arch config.
        cfg = _arch_cfg(parsed.arch, quick_gelu=_is_torchscript(parsed.path))
        model = _build(cfg, seed=None)
        _load_weights(model, parsed.path, what=f"{parsed.arch} weights", error=InvalidInputError,
                      hint=f"name the architecture the weights were trained as, e.g. --clip ViT-B-16:{parsed.path}")
        return _wrap(model, cfg, spec=parsed.canonical, name=f"{parsed.arch}:{parsed.path.name}", device=device)
    info = lookup(parsed.canonical)
    path = find_weights(info.name)
    if path is None:
        if not allow_download:
            raise missing_weights_error(info)
        path = pull(info.name, progress=True)
    cfg = _arch_cfg(parsed.arch, quick_gelu=info.quick_gelu)
    model = _build(cfg, seed=None)
    _load_weights(model, path, what=info.name, error=WeightsMissingError,
                  hint=f"the file may be damaged: delete it and run `atelier models pull {info.name}`")
    return _wrap(model, cfg, spec=info.name, name=info.name, device=device, mean=info.mean, std=info.std)


def loaded_models() -> list[tuple[str, str]]:
    """(spec, device) of every cached model, for status reports."""
    with _LOCK:
        return [(clip.spec, str(key[-1])) for key, clip in _CACHE.items()]


def release_all() -> int:
    """Drops every cached model and frees cached GPU memory; returns how many were dropped."""
    with _LOCK:
        count = len(_CACHE)
        _CACHE.clear()
    if count:
        gc.collect()  # costs ~0.3 s (the tokenizer's tables), so only when something was dropped
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return count
