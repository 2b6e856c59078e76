"""Text relevance maps: how strongly each pixel of an image matches a prompt, as an [H, W] map in [0, 1].

Two methods, one contract (`relevance_map`):

- "clipseg": CLIPSeg (Lüddecke & Ecker 2022, `CIDAS/clipseg-rd64-refined` through `transformers`), the
  relevance model of the seed paper. Used only when `transformers` is installed and the weights are already in
  the Hugging Face cache: Atelier never downloads them on its own (`local_files_only=True`). CLIPSeg brings its
  own CLIP; the `clip` argument is not used. The map is CLIPSeg's sigmoid probability, resized to the image.
- "dense-clip": MaskCLIP-style dense features (Zhou, Loy & Dai 2022) from the open_clip image tower the user
  already has, compared with the prompt's text embedding. Needs nothing beyond open_clip and works with any
  CLIP Atelier loads (`domain`, `RN50:openai`, `ViT-B-32:openai`, the tiny test models).

Dense features (MaskCLIP). CLIP's global image embedding is an attention pool over the last feature map; the
pool's query/key attention mixes all positions into one vector, but its value and output projections are
per-position linear maps into the joint image-text space. Applying only those to every position gives one
joint-space embedding per position:

- ModifiedResNet tower: `c_proj(v_proj(f))` for each position `f` of the layer4 feature map (stride 32). No
  positional embedding is added (it belongs to the skipped query/key path), so any input size works.
- ViT tower: the tokens entering the last block go through that block's value projection and `out_proj` only
  (no query/key attention, no residual, no MLP: the residual and MLP carry the global, position-mixed signal,
  which ClearCLIP, Lan et al. 2024, found to blur dense maps), then `ln_post` and `proj`. The positional
  embedding is resized (bicubic) when the input grid differs from the trained one.

The image is resized so its longer side is `scale` x the tower's input size (capped at `max_side`, each side a
multiple of the tower's stride): the last feature map of a 64-px domain CLIP is 2x2 at 64 px, 8x8 at 256 px.
Each position sees a stride-wide cell, so the map is coarse; `shifts` > 1 runs the tower on `shifts`^2 copies
of the image offset by a fraction of the stride and interleaves the results into a `shifts`-times finer grid.
Cosine similarity with the normalised text embedding (optionally minus the mean similarity to
`background_prompts`) is upsampled bilinearly to the image's size and normalised to [0, 1] (`normalize`; by
default the image's mean score maps to 0 and its peak to 1).

Measured with the domain CLIP on 40 held-out world photos (128 px, caption prompts), ROC AUC of the scores
against the true mask: 0.91 at the defaults (scale 4, shifts 2), 0.88 with one pass, 0.51 at the tower's own
64 px. A category-only prompt ("a photo of a chair") gives no dense signal (AUC about 0.5): the small domain
tower knows shape only globally, colour and pattern locally. `benchmarks/segment_bench.py` measures IoU.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from backend import external
from backend.errors import DependencyMissingError, InvalidInputError, WeightsMissingError
from backend.models.clip import ClipModel
from backend.stylize.losses import check_prompt

METHODS = ("auto", "clipseg", "dense-clip")
"""`RelevanceConfig.method` choices."""

NORMALIZATIONS = ("minmax", "mean-max", "softmax")
"""`RelevanceConfig.normalize` choices."""

CLIPSEG_REPO = "CIDAS/clipseg-rd64-refined"
"""The CLIPSeg weights on the Hugging Face Hub (about 600 MB)."""

_CLIPSEG_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_CLIPSEG_FETCH = f"huggingface-cli download {CLIPSEG_REPO}"


@dataclass
class RelevanceConfig:
    """How a text relevance map is computed."""

    method: Literal["auto", "clipseg", "dense-clip"] = "auto"
    """"clipseg": CLIPSeg (needs `transformers` and its weights in the Hugging Face cache; an error naming what is
    missing otherwise). "dense-clip": MaskCLIP-style dense features of the given CLIP. "auto": clipseg when both
    are present, else dense-clip."""
    scale: float = 4.0
    """dense-clip: the image's longer side is resized to this multiple of the CLIP's input size (domain CLIP: 64 px
    -> 256 px, an 8x8 feature grid), so objects that fill part of the photo reach the scale the tower was trained
    on; capped by `max_side`."""
    max_side: int = 448
    """dense-clip: upper bound on the resized longer side in pixels (RN50/ViT-B at 224 px: 448, as in MaskCLIP);
    bounds the CPU cost."""
    shifts: int = 2
    """dense-clip: the tower runs on shifts x shifts copies of the image offset by stride / shifts pixels, and the
    feature grids are interleaved into a grid `shifts` times finer (cost grows as shifts^2). 1: one pass."""
    background_prompts: tuple[str, ...] = ()
    """dense-clip: prompts for "not the object" (e.g. "a photo of a background", "clutter"). "mean-max" and
    "minmax": their mean cosine similarity is subtracted from the prompt's per position, which removes what every
    prompt matches (lighting, texture statistics). "softmax": they are the competing classes. Empty: none. With
    the domain CLIP (which never saw such words) they changed the ROC AUC by less than 0.01, so the default is
    empty."""
    normalize: Literal["mean-max", "minmax", "softmax"] = "mean-max"
    """dense-clip: how scores s become [0, 1].
    "mean-max": (s - mean) / (max - mean), clipped at 0: the image's average score stands for the background
    level, so everything at or below it is 0 and the best position 1; a cut at 0.5 keeps what lies halfway between
    the average and the peak. "minmax": (s - min) / (max - min). Both assume the object is in the image (a constant
    map becomes all 0). Measured with the domain CLIP and the superpixel merge (30 world photos each, mean IoU,
    colour+category / caption prompts): objects covering 12% of the photo 0.54 / 0.59 with "mean-max" against
    0.25 / 0.31 with "minmax" (whose half-way cut keeps half the photo); objects covering 38% 0.66 / 0.40 against
    0.54 / 0.57: for close-ups that fill most of the image, "minmax" can be the better choice.
    "softmax": the probability of the prompt against `background_prompts` per position, softmax(temperature *
    cosine), an absolute scale (needs at least one background prompt). CLIPSeg maps are always its sigmoid
    probabilities."""
    temperature: float | None = None
    """dense-clip "softmax": multiplies the cosines before the softmax; None: the CLIP's learnt logit scale."""
    clipseg_model: str = CLIPSEG_REPO
    """clipseg: a Hugging Face repo id looked up in the local cache only, or a local directory written with
    `save_pretrained` (model and processor files)."""


@dataclass
class RelevanceResult:
    """A relevance map and how it was made."""

    map: np.ndarray
    """[H, W] float32 in [0, 1] at the input image's size: 1 where the prompt matches best."""
    method: str
    """"clipseg" or "dense-clip"."""
    scores: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0), np.float32))
    """[h, w] float32 raw scores on the model's grid before upsampling and normalisation: dense-clip cosine
    similarities (minus the background mean when given), CLIPSeg logits. Comparable across images of one model."""


# ---------------------------------------------------------------------------------------------- method choice


def _clipseg_is_local_dir(name: str) -> bool:
    return Path(name).expanduser().is_dir()


def clipseg_weights_present(model: str = CLIPSEG_REPO) -> bool:
    """Whether CLIPSeg weights `model` (repo id or local dir) are on this machine; never touches the network."""
    if _clipseg_is_local_dir(model):
        return any((Path(model).expanduser() / f).is_file() for f in _CLIPSEG_WEIGHT_FILES)
    from huggingface_hub import try_to_load_from_cache  # reads the cache layout only, no request

    from backend.models.store import hf_hub_cache

    cache = str(hf_hub_cache())
    for filename in _CLIPSEG_WEIGHT_FILES:
        try:
            hit = try_to_load_from_cache(model, filename, cache_dir=cache)
        except ValueError:  # not a valid repo id (e.g. a folder that does not exist)
            return False
        if isinstance(hit, str) and Path(hit).is_file():
            return True
    return False


def clipseg_available(model: str = CLIPSEG_REPO) -> bool:
    """Whether method "clipseg" can run here: transformers installed and the weights present."""
    return external.HAS_TRANSFORMERS and clipseg_weights_present(model)


def _check_clipseg(model: str) -> None:
    if not external.HAS_TRANSFORMERS:
        raise DependencyMissingError(
            "relevance method 'clipseg' needs the transformers package, which is not installed",
            hint=f"pip install transformers and fetch the weights once ({_CLIPSEG_FETCH}), "
                 "or use method 'dense-clip' (or 'auto')",
        )
    if not clipseg_weights_present(model):
        from backend.models.store import hf_hub_cache

        if _clipseg_is_local_dir(model) or model.startswith(("/", ".", "~")):
            where = f"the folder {Path(model).expanduser()}"
        else:
            where = f"the Hugging Face cache ({hf_hub_cache()})"
        raise WeightsMissingError(
            f"the CLIPSeg weights {model} are not in {where}; Atelier never downloads them on its own",
            hint=f"fetch them once with `{_CLIPSEG_FETCH}`, or use method 'dense-clip' (or 'auto')",
        )


def check_config(config: RelevanceConfig) -> None:
    """Raises InvalidInputError naming the field and the fix when `config` cannot run."""
    if config.method not in METHODS:
        raise InvalidInputError(f"unknown relevance method {config.method!r}", hint=f"use one of {', '.join(METHODS)}")
    if config.normalize not in NORMALIZATIONS:
        raise InvalidInputError(f"unknown relevance normalisation {config.normalize!r}",
                                hint=f"use one of {', '.join(NORMALIZATIONS)}")
    if not _finite_number(config.scale) or config.scale <= 0:
        raise InvalidInputError(f"relevance scale must be a positive number, got {config.scale!r}",
                                hint="4.0 feeds a 64-px CLIP 256-px images")
    if not _integer(config.max_side) or config.max_side < 1:
        raise InvalidInputError(f"relevance max_side must be a positive integer, got {config.max_side!r}",
                                hint="e.g. 448")
    if not _integer(config.shifts) or not 1 <= config.shifts <= 8:
        raise InvalidInputError(f"relevance shifts must be an integer in [1, 8], got {config.shifts!r}",
                                hint="1 is one pass; 2 (the default) four passes on a grid twice as fine")
    prompts = config.background_prompts
    if isinstance(prompts, str) or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise InvalidInputError("background_prompts must be a tuple of non-empty strings",
                                hint='e.g. ("a photo of a background", "clutter")')
    if config.normalize == "softmax" and not prompts:
        raise InvalidInputError("relevance normalisation 'softmax' needs background prompts to compete with",
                                hint='set background_prompts, e.g. ("a photo of a background", "clutter"), '
                                     "or use normalize='mean-max'")
    if config.temperature is not None and (not _finite_number(config.temperature) or config.temperature <= 0):
        raise InvalidInputError(f"relevance temperature must be a positive number or None, got {config.temperature!r}",
                                hint="None uses the CLIP's logit scale")
    if not isinstance(config.clipseg_model, str) or not config.clipseg_model.strip():
        raise InvalidInputError("clipseg_model is empty", hint=f"use {CLIPSEG_REPO!r} or a local directory")


def resolve_method(config: RelevanceConfig | None = None) -> Literal["clipseg", "dense-clip"]:
    """The method `config` runs here: checks the config, and for an explicit "clipseg" that transformers and the
    weights are present (DependencyMissingError / WeightsMissingError with the fix otherwise). Call it when the
    feature is configured, before any work."""
    config = config or RelevanceConfig()
    check_config(config)
    if config.method == "dense-clip":
        return "dense-clip"
    if config.method == "clipseg":
        _check_clipseg(config.clipseg_model)
        return "clipseg"
    return "clipseg" if clipseg_available(config.clipseg_model) else "dense-clip"


# ---------------------------------------------------------------------------------------------- entry point


def relevance_map(image: np.ndarray, prompt: str, clip: ClipModel, config: RelevanceConfig | None = None,
                  device: str | torch.device = "cpu") -> RelevanceResult:
    """How strongly each pixel of `image` matches `prompt`.

    image: [H, W, 3] float32 RGB in [0, 1], top row first (H, W >= 8).
    prompt: the text naming what to find (e.g. "a red chair").
    clip: the CLIP whose image tower gives the dense-clip features (unused by CLIPSeg). dense-clip runs on the
        device `clip` lives on.
    device: where CLIPSeg runs.
    Returns a RelevanceResult whose `map` is [H, W] float32 in [0, 1].
    Raises InvalidInputError for an empty prompt, a malformed image or config; DependencyMissingError /
    WeightsMissingError when method "clipseg" is asked for and is not available.
    """
    config = config or RelevanceConfig()
    prompt = _check_prompt(prompt)
    _check_image(image)
    method = resolve_method(config)
    if method == "dense-clip" and not isinstance(clip, ClipModel):
        raise InvalidInputError(f"clip must be a ClipModel, got {type(clip).__name__}",
                                hint="load one with backend.models.clip.load_clip(spec)")
    image = np.ascontiguousarray(image[..., :3], dtype=np.float32)
    if method == "clipseg":
        scores, prob = _clipseg_map(image, prompt, config, device)
        return RelevanceResult(map=prob, method="clipseg", scores=scores)
    scores, rel = _dense_clip_map(image, prompt, clip, config)
    return RelevanceResult(map=rel, method="dense-clip", scores=scores)


def _check_prompt(prompt: Any) -> str:
    return check_prompt(prompt, hint='name the object to find, e.g. "a red chair"')


def _check_image(image: Any) -> None:
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(f"the image must be a numpy array, got {type(image).__name__}",
                                hint="pass an [H, W, 3] float32 array in [0, 1]")
    if image.ndim != 3 or image.shape[2] != 3:
        hint = "drop the alpha channel: image[..., :3]" if image.ndim == 3 and image.shape[2] == 4 else \
            "pass an [H, W, 3] RGB array (grey: np.repeat(image[..., None], 3, axis=2))"
        raise InvalidInputError(f"the image must be [H, W, 3], got shape {image.shape}", hint=hint)
    if min(image.shape[:2]) < 8:
        raise InvalidInputError(f"the image is too small ({image.shape[1]}x{image.shape[0]} px)",
                                hint="use an image at least 8 px on each side")
    if not np.issubdtype(image.dtype, np.floating):
        raise InvalidInputError(f"the image must be float in [0, 1], got {image.dtype}",
                                hint="convert uint8 images with image.astype(np.float32) / 255")
    if not np.isfinite(image).all():
        raise InvalidInputError("the image has NaN or infinite values", hint="pass finite values in [0, 1]")
    low, high = float(image.min()), float(image.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise InvalidInputError(f"the image must be in [0, 1], got values in [{low:.3g}, {high:.3g}]",
                                hint="divide 8-bit values by 255")


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------- dense CLIP


def _tower_stride(clip: ClipModel) -> int:
    visual = clip.model.visual
    if clip.tower == "vit":
        patch = visual.patch_size
        return int(patch[0] if isinstance(patch, (tuple, list)) else patch)
    return 32  # ModifiedResNet: stem /4, then three stride-2 stages


def _input_size(height: int, width: int, clip: ClipModel, config: RelevanceConfig) -> tuple[int, int]:
    """(h, w) the image is resized to: longer side scale x image_size (<= max_side), multiples of the stride."""
    stride = _tower_stride(clip)
    longer = min(config.scale * clip.image_size, config.max_side)
    factor = longer / max(height, width)
    return (max(stride, round(height * factor / stride) * stride),
            max(stride, round(width * factor / stride) * stride))


def _resnet_features(visual, x: torch.Tensor) -> torch.Tensor:
    """x: [B, 3, h, w] normalised -> [B, D, h/32, w/32]: the attention pool's value path per position."""
    f = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(x)))))
    pool = visual.attnpool
    tokens = f.flatten(2).transpose(1, 2)  # [B, N, C]
    emb = pool.c_proj(pool.v_proj(tokens))  # [B, N, D]
    return emb.transpose(1, 2).reshape(f.shape[0], -1, f.shape[2], f.shape[3])


def _vit_positions(pos: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """pos: [1 + gh*gw, C] learnt positional embedding -> [1 + h*w, C] for a (h, w) token grid (bicubic)."""
    if tuple(grid) == tuple(size):
        return pos
    cls, grid_pos = pos[:1], pos[1:]
    grid_pos = grid_pos.T.reshape(1, -1, grid[0], grid[1])
    grid_pos = F.interpolate(grid_pos, size=size, mode="bicubic", align_corners=False)
    return torch.cat([cls, grid_pos[0].flatten(1).T], dim=0)


def _vit_features(visual, x: torch.Tensor) -> torch.Tensor:
    """x: [B, 3, h, w] normalised -> [B, D, h/p, w/p]: the last block's value path, ln_post and proj per token."""
    blocks = visual.transformer.resblocks
    last = blocks[-1]
    attn = getattr(last, "attn", None)
    if not isinstance(attn, torch.nn.MultiheadAttention) or getattr(visual, "attn_pool", None) is not None \
            or visual.proj is None:
        raise InvalidInputError("dense-clip relevance supports open_clip ViTs with standard attention blocks, "
                                "a class token and a projection",
                                hint="use a ResNet or standard ViT CLIP (RN50:openai, ViT-B-32:openai, domain), "
                                     "or method 'clipseg'")
    t = visual.conv1(x)  # [B, C, gh, gw]
    batch, _, gh, gw = t.shape
    t = t.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(t.dtype).expand(batch, 1, -1)
    t = torch.cat([cls, t], dim=1) + _vit_positions(visual.positional_embedding, visual.grid_size, (gh, gw)).to(t.dtype)
    t = visual.ln_pre(t)
    batch_first = getattr(visual.transformer, "batch_first", True)
    if not batch_first:
        t = t.transpose(0, 1)
    for block in blocks[:-1]:
        t = block(t)
    if not batch_first:
        t = t.transpose(0, 1)
    y = last.ln_1(t)
    width = y.shape[-1]
    if attn.in_proj_weight is not None:
        weight = attn.in_proj_weight[2 * width:]
    else:
        weight = attn.v_proj_weight
    bias = attn.in_proj_bias[2 * width:] if attn.in_proj_bias is not None else None
    v = attn.out_proj(F.linear(y, weight, bias))
    tokens = visual.ln_post(v[:, 1:]) @ visual.proj  # [B, N, D]
    return tokens.transpose(1, 2).reshape(batch, -1, gh, gw)


@torch.no_grad()
def dense_features(image: np.ndarray, clip: ClipModel, config: RelevanceConfig | None = None) -> torch.Tensor:
    """Per-position joint-space embeddings of `image` (module docstring), unit length.

    image: [H, W, 3] float32 in [0, 1]. Returns [D, gh, gw] float32 on the CLIP's device: a grid `shifts` times
    finer than the tower's stride on the resized image, whose cells tile the image evenly (cell centres at
    (k + 0.5) * stride / shifts), so bilinear upsampling with align_corners=False maps them to the image.
    """
    config = config or RelevanceConfig()
    visual = clip.model.visual
    dtype = next(visual.parameters()).dtype
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None].to(clip.device)
    height, width = image.shape[:2]
    size = _input_size(height, width, clip, config)
    if size != (height, width):
        shrink = size[0] < height or size[1] < width
        antialias = shrink and x.device.type in ("cpu", "cuda")
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=antialias)
    mean = torch.tensor(clip.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(clip.std, device=x.device).view(1, 3, 1, 1)
    x = ((x - mean) / std).to(dtype)

    stride, shifts = _tower_stride(clip), int(config.shifts)
    if shifts > 1:
        # Copy (i, j) is the image moved up/left by offset[i], offset[j] (edges replicated): its cell k then
        # covers [k*stride + o, (k+1)*stride + o), centred at (k*shifts + i + 0.5) * step with the half-cell
        # correction, so interleaving the copies gives an evenly spaced grid `shifts` times finer.
        step = stride / shifts
        offsets = [round(i * step - (stride - step) / 2) for i in range(shifts)]
        pad = stride
        padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        copies = [padded[..., pad + oy:pad + oy + size[0], pad + ox:pad + ox + size[1]]
                  for oy in offsets for ox in offsets]
        x = torch.cat(copies)
    features = _vit_features(visual, x) if clip.tower == "vit" else _resnet_features(visual, x)
    features = features.float()
    if shifts > 1:
        _, dim, gh, gw = features.shape
        features = features.view(shifts, shifts, dim, gh, gw).permute(2, 3, 0, 4, 1).reshape(dim, gh * shifts,
                                                                                            gw * shifts)
    else:
        features = features[0]
    return F.normalize(features, dim=0)


@torch.no_grad()
def _dense_clip_map(image: np.ndarray, prompt: str, clip: ClipModel,
                    config: RelevanceConfig) -> tuple[np.ndarray, np.ndarray]:
    features = dense_features(image, clip, config)  # [D, gh, gw]
    texts = clip.encode_text([prompt, *config.background_prompts], normalize=True).float()
    sims = torch.einsum("dhw,nd->nhw", features, texts.to(features.device))  # [1 + K, gh, gw]
    if config.normalize == "softmax":
        temperature = config.temperature if config.temperature is not None else float(clip.model.logit_scale.exp())
        scores = sims[0]
        grid = torch.softmax(temperature * sims, dim=0)[0]
    else:
        scores = sims[0] - sims[1:].mean(0) if len(sims) > 1 else sims[0]
        grid = scores
    height, width = image.shape[:2]
    up = F.interpolate(grid[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    if config.normalize in ("minmax", "mean-max"):
        low, high = (up.min() if config.normalize == "minmax" else up.mean()), up.max()  # mean-max clips below
        up = (up - low) / (high - low) if float(high - low) > 1e-8 else torch.zeros_like(up)
    rel = up.clamp(0, 1).cpu().numpy().astype(np.float32)
    return scores.cpu().numpy().astype(np.float32), rel


# ---------------------------------------------------------------------------------------------- CLIPSeg

_CLIPSEG_CACHE: dict[tuple[str, str], tuple[Any, Any]] = {}
_CLIPSEG_LOCK = threading.Lock()


def _load_clipseg(name: str, device: torch.device) -> tuple[Any, Any]:
    """(processor, model) for CLIPSeg `name`, from the local cache or directory only; cached per device."""
    key = (name, str(device))
    with _CLIPSEG_LOCK:
        hit = _CLIPSEG_CACHE.get(key)
        if hit is not None:
            return hit
        transformers = external.require_transformers()
        source = str(Path(name).expanduser()) if _clipseg_is_local_dir(name) else name
        try:
            processor = transformers.CLIPSegProcessor.from_pretrained(source, local_files_only=True)
            model = transformers.CLIPSegForImageSegmentation.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError) as exc:  # incomplete cache (e.g. the weights but no tokenizer files)
            raise WeightsMissingError(f"could not load CLIPSeg {name} from the local cache: {exc}",
                                      hint=f"fetch all its files once with `{_CLIPSEG_FETCH}`") from exc
        model = model.to(device).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        _CLIPSEG_CACHE[key] = (processor, model)
        return processor, model


def release_clipseg() -> int:
    """Drops the cached CLIPSeg models; returns how many were dropped."""
    with _CLIPSEG_LOCK:
        count = len(_CLIPSEG_CACHE)
        _CLIPSEG_CACHE.clear()
    return count


@torch.no_grad()
def _clipseg_map(image: np.ndarray, prompt: str, config: RelevanceConfig,
                 device: str | torch.device) -> tuple[np.ndarray, np.ndarray]:
    from backend.devices import resolve_device

    dev = device if isinstance(device, torch.device) else resolve_device(str(device))
    processor, model = _load_clipseg(config.clipseg_model, dev)
    pixels = (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)  # the processor rescales uint8 by 1/255
    inputs = processor(text=[prompt], images=[pixels], padding=True, return_tensors="pt")
    inputs = {k: v.to(dev) for k, v in inputs.items()}
    logits = model(**inputs).logits.float()
    logits = logits.reshape(-1, *logits.shape[-2:])[0]  # [352, 352] (transformers squeezes a batch of one)
    height, width = image.shape[:2]
    # CLIPSeg resizes the whole image to a square without cropping; resizing back undoes the aspect change.
    up = F.interpolate(logits[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    prob = torch.sigmoid(up).cpu().numpy().astype(np.float32)
    return logits.cpu().numpy().astype(np.float32), prob
