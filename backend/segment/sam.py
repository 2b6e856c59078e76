"""Segment Anything: loading a checkpoint, automatic mask proposals and point/box prompts.

Checkpoints are found the way CLIP weights are (`backend.models.store`): a path the user gives, else the
catalogue's file (`sam_vit_b`, `sam_vit_l`, `sam_vit_h`) in the Atelier weights dir. Two file formats load:

- the official segment-anything release (`sam_vit_b_01ec64.pth`, ...): a plain state dict. Its architecture
  is `sam_type`, or read from the file (the image encoder's width: 768 vit_b, 1024 vit_l, 1280 vit_h);
- an Atelier SAM checkpoint (`save_sam_checkpoint`): {"format": "atelier-sam-1", "name", "arch", "state_dict"},
  which records its own architecture, so small configs (`TINY_SAM`, for tests) load through the same loader.

Models are built from segment-anything's modules with the sizes of a `SamArch` (for the three releases these
are the sizes of its `build_sam_vit_*` functions; a test checks they agree) and cached per (file, device)
until `release_sam()`.
"""

from __future__ import annotations

import gc
import math
import pickle
import threading
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.checkpoints import save_atomic
from backend.errors import InvalidInputError
from backend.models.catalogue import lookup
from backend.models.store import find_weights, missing_weights_error, weights_dir
from backend.progress import CancelToken, ProgressFn, no_progress

SAM_TYPES = ("vit_b", "vit_l", "vit_h")
"""The released architectures, smallest first (the order the weights cache is searched in)."""

CHECKPOINT_FORMAT = "atelier-sam-1"
"""The `format` entry of an Atelier SAM checkpoint file."""


# ---------------------------------------------------------------------------------------------- architectures


@dataclass(frozen=True)
class SamArch:
    """The sizes of a Segment Anything model (segment-anything's `_build_sam`, every size a field)."""

    encoder_embed_dim: int
    """Token width of the ViT image encoder (768 vit_b, 1024 vit_l, 1280 vit_h)."""
    encoder_depth: int
    """Transformer blocks in the image encoder."""
    encoder_num_heads: int
    """Attention heads per image-encoder block."""
    encoder_global_attn_indexes: tuple[int, ...]
    """Blocks with global attention; the others attend within windows."""
    image_size: int = 1024
    """Side of the square the image is resized (longest side) and padded to, in pixels."""
    patch_size: int = 16
    """ViT patch side in pixels; the image embedding is image_size / patch_size tokens on a side."""
    window_size: int = 14
    """Side of the attention windows, in tokens."""
    prompt_embed_dim: int = 256
    """Width of the image embedding and of the prompt and mask-decoder tokens."""
    mask_in_chans: int = 16
    """Hidden channels of the prompt encoder's mask-input downscaler (a multiple of 4)."""
    decoder_depth: int = 2
    """Two-way transformer blocks in the mask decoder."""
    decoder_mlp_dim: int = 2048
    """MLP width in the mask decoder's transformer."""
    decoder_num_heads: int = 8
    """Attention heads in the mask decoder's transformer."""
    iou_head_hidden_dim: int = 256
    """Hidden width of the head that predicts each mask's IoU (SAM's own quality score)."""

    def build(self, seed: int | None = None):
        """A `segment_anything.modeling.Sam` of these sizes in eval mode, on the CPU; `seed` fixes the random
        init without touching the global RNG (None: torch's default init, for weights about to be loaded)."""
        from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

        embedding = self.image_size // self.patch_size

        def make() -> Sam:
            return Sam(
                image_encoder=ImageEncoderViT(
                    depth=self.encoder_depth, embed_dim=self.encoder_embed_dim, img_size=self.image_size,
                    mlp_ratio=4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                    num_heads=self.encoder_num_heads, patch_size=self.patch_size, qkv_bias=True, use_rel_pos=True,
                    global_attn_indexes=tuple(self.encoder_global_attn_indexes), window_size=self.window_size,
                    out_chans=self.prompt_embed_dim),
                prompt_encoder=PromptEncoder(
                    embed_dim=self.prompt_embed_dim, image_embedding_size=(embedding, embedding),
                    input_image_size=(self.image_size, self.image_size), mask_in_chans=self.mask_in_chans),
                mask_decoder=MaskDecoder(
                    num_multimask_outputs=3,
                    transformer=TwoWayTransformer(depth=self.decoder_depth, embedding_dim=self.prompt_embed_dim,
                                                  mlp_dim=self.decoder_mlp_dim, num_heads=self.decoder_num_heads),
                    transformer_dim=self.prompt_embed_dim, iou_head_depth=3,
                    iou_head_hidden_dim=self.iou_head_hidden_dim),
                pixel_mean=[123.675, 116.28, 103.53],
                pixel_std=[58.395, 57.12, 57.375],
            ).eval()

        if seed is None:
            return make()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return make()

    @classmethod
    def from_dict(cls, data: dict) -> "SamArch":
        """The inverse of `asdict` (lists back to tuples); InvalidInputError for unknown or missing sizes."""
        try:
            values = dict(data)
            values["encoder_global_attn_indexes"] = tuple(int(i) for i in values["encoder_global_attn_indexes"])
            return cls(**values)
        except (TypeError, KeyError, ValueError) as exc:
            raise InvalidInputError(f"the SAM architecture {data!r:.200} is not valid: {exc}",
                                    hint="re-save the model with save_sam_checkpoint") from exc


SAM_ARCHS: dict[str, SamArch] = {
    "vit_b": SamArch(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamArch(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamArch(1280, 32, 16, (7, 15, 23, 31)),
}
"""The released architectures by `sam_type` (segment-anything's `sam_model_registry` sizes)."""

TINY_SAM = SamArch(encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=(1,),
                   image_size=64, patch_size=8, window_size=4, prompt_embed_dim=32, mask_in_chans=4,
                   decoder_mlp_dim=64, decoder_num_heads=2, iou_head_hidden_dim=32)
"""A random SAM for tests and plumbing: 64-px input, 2 blocks of width 32 (86k parameters, milliseconds)."""

_WIDTH_TO_TYPE = {arch.encoder_embed_dim: name for name, arch in SAM_ARCHS.items()}


# ---------------------------------------------------------------------------------------------- config


@dataclass
class SamConfig:
    """Which SAM to load and how its automatic mask generator proposes masks."""

    checkpoint: str | None = None
    """A checkpoint file (official .pth or Atelier SAM checkpoint). None: the catalogue's file for `sam_type` in
    the weights cache. A path that does not exist is an error, never a fallback."""
    sam_type: str | None = None
    """'vit_b' | 'vit_l' | 'vit_h'. With `checkpoint`: checked against the file (None: read from it). Without:
    that type's cached file is required (missing: WeightsMissingError naming the pull command); None takes the
    first of vit_b, vit_l, vit_h in the cache, and with none there the superpixel fallback runs."""
    points_per_side: int = 32
    """The automatic generator prompts a points_per_side² grid (SAM's default 32: 1024 prompts)."""
    points_per_batch: int = 64
    """Prompts decoded together (memory against speed); progress is reported per batch."""
    pred_iou_thresh: float = 0.86
    """Masks whose predicted IoU (SAM's own quality score) is not above this are dropped (0: keep all).
    SAM's default is 0.88; a little lower keeps the parts a text prompt may name."""
    stability_score_thresh: float = 0.92
    """Masks less stable than this under a shifted binarisation cutoff are dropped (0: keep all; SAM: 0.95)."""
    stability_score_offset: float = 1.0
    """The logit shift of the stability score."""
    box_nms_thresh: float = 0.7
    """Box IoU above which a lower-scoring duplicate mask is suppressed."""
    crop_n_layers: int = 0
    """Extra passes on image crops (0: the whole image only; each layer n runs on 4^n crops, much slower)."""

    def check(self) -> None:
        """Raises InvalidInputError for a setting out of range."""
        if self.sam_type is not None and self.sam_type not in SAM_TYPES:
            raise InvalidInputError(f"unknown SAM type {self.sam_type!r}", hint=f"use one of {', '.join(SAM_TYPES)}")
        if not 1 <= self.points_per_side <= 128:
            raise InvalidInputError(f"points_per_side must be in [1, 128], got {self.points_per_side}")
        if not 1 <= self.points_per_batch <= 4096:
            raise InvalidInputError(f"points_per_batch must be in [1, 4096], got {self.points_per_batch}")
        if not 0 <= self.crop_n_layers <= 3:
            raise InvalidInputError(f"crop_n_layers must be in [0, 3], got {self.crop_n_layers}")
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value <= 1.0):
                raise InvalidInputError(f"{name} must be a number at most 1, got {value!r}")


# ---------------------------------------------------------------------------------------------- files


def save_sam_checkpoint(model, arch: SamArch, path: str | Path, name: str = "custom") -> Path:
    """Writes `model` (a `Sam` built from `arch`) as an Atelier SAM checkpoint that `load_sam` reads back.

    The file is a torch dict {"format": "atelier-sam-1", "name", "arch" (SamArch as a dict), "state_dict" (CPU
    tensors)}, loadable with `weights_only=True`. Returns the path.
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "name": str(name),
        "arch": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(arch).items()},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    return save_atomic(payload, Path(path).expanduser())


def _short(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
    return text[:300] + ("..." if len(text) > 300 else "")


def _read(path: Path) -> Any:
    """torch.load, memory-mapped where the file allows (a 2.5 GB vit_h is not copied into memory twice)."""
    hint = "give the .pth file from the segment-anything release, or an Atelier SAM checkpoint"
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) files
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError, IndexError, KeyError, TypeError,
            AttributeError) as exc:  # what torch's unpickler raises for bytes that are not a checkpoint
        raise InvalidInputError(f"{path} is not a readable SAM checkpoint: {_short(exc)}", hint=hint) from exc


def _state_and_arch(path: Path, sam_type: str | None) -> tuple[dict, SamArch, str]:
    """(state dict, architecture, name) of a checkpoint file, the architecture checked against `sam_type`."""
    data = _read(path)
    if isinstance(data, dict) and "format" in data:
        if data["format"] != CHECKPOINT_FORMAT:
            raise InvalidInputError(f"{path} is a {data['format']!r} checkpoint; this Atelier reads "
                                    f"{CHECKPOINT_FORMAT!r}",
                                    hint="upgrade Atelier, or re-save the model with save_sam_checkpoint")
        missing = [k for k in ("name", "arch", "state_dict") if k not in data]
        if missing:
            raise InvalidInputError(f"{path} lacks {', '.join(missing)}", hint="re-save it with save_sam_checkpoint")
        arch, name = SamArch.from_dict(data["arch"]), str(data["name"])
        if sam_type is not None and SAM_ARCHS.get(sam_type) != arch:
            raise InvalidInputError(f"{path} holds a SAM named {name!r}, not {sam_type}",
                                    hint="leave --sam-type out: the checkpoint records its architecture")
        return data["state_dict"], arch, name
    hint = "give sam_vit_b_01ec64.pth, sam_vit_l_0b3195.pth or sam_vit_h_4b8939.pth from the segment-anything release"
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise InvalidInputError(f"{path} is not a SAM state dict (a dict of tensors)", hint=hint)
    patch = data.get("image_encoder.patch_embed.proj.weight")
    if patch is None:
        raise InvalidInputError(f"{path} has no `image_encoder.` weights, so it is not a SAM checkpoint", hint=hint)
    found = _WIDTH_TO_TYPE.get(int(patch.shape[0]))
    if found is None:
        raise InvalidInputError(f"{path} has a {int(patch.shape[0])}-wide image encoder, which is none of "
                                f"{', '.join(SAM_TYPES)}", hint=hint)
    if sam_type is not None and sam_type != found:
        raise InvalidInputError(f"{path} holds {found} weights, not {sam_type}",
                                hint=f"pass --sam-type {found} (or leave it out: the type is read from the file)")
    return data, SAM_ARCHS[found], found


@dataclass(eq=False)
class LoadedSam:
    """A SAM ready to run."""

    model: Any
    """The `segment_anything.modeling.Sam`, eval mode, frozen, on its device."""
    name: str
    """'vit_b', 'vit_l', 'vit_h', or the name an Atelier checkpoint records ('tiny')."""
    arch: SamArch
    """Its sizes."""
    path: Path
    """The checkpoint file it was loaded from."""

    @property
    def device(self) -> torch.device:
        return self.model.device


_CACHE: dict[tuple, LoadedSam] = {}
_LOCK = threading.Lock()


def load_sam(path: str | Path, sam_type: str | None = None, device: str | torch.device = "cpu") -> LoadedSam:
    """The SAM in checkpoint `path` on `device`, cached per (file, its mtime and size, sam_type, device).

    InvalidInputError for a missing file, one that is not a SAM checkpoint, or one whose architecture is
    not `sam_type`.
    """
    if sam_type is not None and sam_type not in SAM_TYPES:
        raise InvalidInputError(f"unknown SAM type {sam_type!r}", hint=f"use one of {', '.join(SAM_TYPES)}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidInputError(f"the SAM checkpoint {path} does not exist",
                                hint="check the path, or leave --sam-checkpoint out to use the weights cache "
                                     "(`atelier models pull sam_vit_b`)")
    path = path.resolve()
    stat = path.stat()
    dev = torch.device(device)
    key = (str(path), stat.st_mtime_ns, stat.st_size, sam_type, str(dev))
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        state, arch, name = _state_and_arch(path, sam_type)
        model = arch.build(seed=None)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise InvalidInputError(f"the weights in {path} do not fit a {name} SAM: {_short(exc)}",
                                    hint="the file may be damaged: download it again "
                                         f"(`atelier models pull sam_{name}`)") from exc
        del state
        loaded = LoadedSam(model=model.to(dev).eval().requires_grad_(False), name=name, arch=arch, path=path)
        _CACHE[key] = loaded
        return loaded


def release_sam() -> int:
    """Drops every cached SAM and frees cached GPU memory; returns how many were dropped."""
    with _LOCK:
        count = len(_CACHE)
        _CACHE.clear()
    if count:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return count


def find_sam_checkpoint(config: SamConfig) -> tuple[Path, str | None] | None:
    """(checkpoint path, sam_type to check it against) for `config`, or None when no SAM weights are here.

    A given checkpoint must exist (InvalidInputError otherwise: never a silent fallback). A given `sam_type`
    must be in the weights cache (WeightsMissingError naming the file, its size and `atelier models pull`).
    Looks on this machine only.
    """
    config.check()
    if config.checkpoint:
        path = Path(config.checkpoint).expanduser()
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "does not exist"
            raise InvalidInputError(f"the SAM checkpoint {path} {what}",
                                    hint="check the path, or leave --sam-checkpoint out to use the weights cache "
                                         "(`atelier models pull sam_vit_b`)")
        return path, config.sam_type
    if config.sam_type is not None:
        info = lookup(f"sam_{config.sam_type}")
        path = find_weights(info.name)
        if path is None:
            raise missing_weights_error(info)
        return path, config.sam_type
    for sam_type in SAM_TYPES:
        path = find_weights(f"sam_{sam_type}")
        if path is not None:
            return path, None
    return None


def no_weights_note() -> str:
    """What the report and the CLI say when the superpixel fallback stands in for SAM."""
    info = lookup("sam_vit_b")
    return (f"no SAM weights on this machine (looked in {weights_dir()}): masks were proposed by SLIC superpixels "
            f"instead; run `atelier models pull sam_vit_b` ({info.display_file}) or pass --sam-checkpoint "
            "for SAM masks")


# ---------------------------------------------------------------------------------------------- running


@dataclass
class Proposals:
    """Candidate masks from a proposer, at the proposer's working resolution."""

    masks: np.ndarray
    """[N, h, w] bool."""
    scores: np.ndarray
    """[N] float32: the proposer's own quality score (SAM: predicted IoU; superpixels: 1)."""
    method: str
    """'sam vit_b', 'superpixels (no SAM weights)', ..."""
    labels: np.ndarray | None = field(default=None, repr=False)
    """Superpixels only: [h, w] int32, the grouping whose regions point prompts pick (None for SAM)."""


def _predictor_class():
    from segment_anything import SamPredictor

    class HoldingPredictor(SamPredictor):
        """Keeps the image embedding after the automatic generator's `reset_image`, so point and box prompts on
        the same (uncropped) image reuse it instead of running the image encoder a second time."""

        def reset_image(self) -> None:
            if not getattr(self, "hold", False):
                super().reset_image()

    return HoldingPredictor


def _generator(loaded: LoadedSam, config: SamConfig, progress: ProgressFn, cancel: CancelToken | None):
    from segment_anything import SamAutomaticMaskGenerator

    class Generator(SamAutomaticMaskGenerator):
        """segment-anything's generator with a progress report and a cancel check per batch of prompts."""

        done = 0
        total = 1

        def _process_batch(self, points, im_size, crop_box, orig_size):
            if cancel is not None:
                cancel.check()
            data = super()._process_batch(points, im_size, crop_box, orig_size)
            self.done += 1
            progress(self.done, self.total)
            return data

    generator = Generator(
        loaded.model, points_per_side=config.points_per_side, points_per_batch=config.points_per_batch,
        pred_iou_thresh=config.pred_iou_thresh, stability_score_thresh=config.stability_score_thresh,
        stability_score_offset=config.stability_score_offset, box_nms_thresh=config.box_nms_thresh,
        crop_n_layers=config.crop_n_layers, min_mask_region_area=0, output_mode="binary_mask")
    generator.predictor = _predictor_class()(loaded.model)
    return generator


def propose_sam(loaded: LoadedSam, image: np.ndarray, config: SamConfig, progress: ProgressFn = no_progress,
                cancel: CancelToken | None = None) -> tuple[Proposals, Any]:
    """SAM's automatic masks for `image`: [h, w, 3] uint8 RGB.

    Returns the proposals (masks at the image's size, scores = predicted IoU, best first) and a predictor
    holding the image's embedding when it can be reused for prompts (crop_n_layers 0), else None.
    """
    from segment_anything.utils.amg import generate_crop_boxes

    generator = _generator(loaded, config, progress, cancel)
    _, layers = generate_crop_boxes(image.shape[:2], config.crop_n_layers, generator.crop_overlap_ratio)
    generator.total = sum(math.ceil(len(generator.point_grids[layer]) / config.points_per_batch) for layer in layers)
    generator.predictor.hold = config.crop_n_layers == 0
    with torch.inference_mode():
        records = generator.generate(image)
    records.sort(key=lambda r: -r["predicted_iou"])
    height, width = image.shape[:2]
    masks = (np.stack([r["segmentation"] for r in records]) if records
             else np.zeros((0, height, width), bool)).astype(bool, copy=False)
    scores = np.asarray([r["predicted_iou"] for r in records], np.float32)
    predictor = generator.predictor if generator.predictor.hold and generator.predictor.is_image_set else None
    if predictor is not None:
        predictor.hold = False
    return Proposals(masks=masks, scores=scores, method=f"sam {loaded.name}"), predictor


def predict_prompts(loaded: LoadedSam, image: np.ndarray, points: np.ndarray | None, box: np.ndarray | None,
                    predictor: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """SAM's three candidate masks (whole, part, sub-part) for point and box prompts.

    image: [h, w, 3] uint8 RGB; points: [P, 3] float (x, y, label: 1 on the object, 0 not on it) in the image's
    pixel coordinates, or None; box: [4] float (x0, y0, x1, y1) pixels, or None; predictor: one already holding
    this image's embedding (from `propose_sam`), else the image encoder runs here.
    Returns masks [3, h, w] bool and SAM's predicted IoU per mask [3] float32.
    """
    if predictor is None:
        predictor = _predictor_class()(loaded.model)
        with torch.inference_mode():
            predictor.set_image(image)
    coords = labels = None
    if points is not None and len(points):
        coords = np.asarray(points[:, :2], np.float32)
        labels = np.asarray(points[:, 2], np.int64)
    with torch.inference_mode():
        masks, scores, _ = predictor.predict(point_coords=coords, point_labels=labels,
                                             box=None if box is None else np.asarray(box, np.float32),
                                             multimask_output=True)
    return masks.astype(bool), np.asarray(scores, np.float32)
