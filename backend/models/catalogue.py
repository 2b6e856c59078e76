"""The weights Atelier knows by name: what each file is, where it comes from, its size and its licence.

A plain registry (segment-anything style): `CATALOGUE[name] -> WeightsInfo`. Open-CLIP entries read their
download source (Hugging Face Hub repo and file, or URL) and preprocessing from open_clip's own pretrained
config, so the catalogue follows the installed open_clip instead of a copy of it.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from typing import Literal

import open_clip
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME, OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from backend.errors import InvalidInputError

try:
    import safetensors  # noqa: F401  (only whether it is there matters: open_clip prefers .safetensors then)

    HAS_SAFETENSORS = True
except ImportError:
    HAS_SAFETENSORS = False

WeightsKind = Literal["clip", "sam"]

MIT = "MIT"
APACHE_2 = "Apache-2.0"


@dataclass(frozen=True)
class WeightsSource:
    """Where a weights file comes from."""

    open_clip_model: str = ""
    """open_clip architecture name, e.g. 'ViT-B-32' ('' for non-CLIP weights)."""
    open_clip_tag: str = ""
    """open_clip pretrained tag, e.g. 'openai' ('' for non-CLIP weights)."""
    hf_repo: str = ""
    """Hugging Face Hub repository id, e.g. 'timm/vit_base_patch32_clip_224.openai' ('' when not on the Hub)."""
    hf_filenames: tuple[str, ...] = ()
    """Candidate file names in `hf_repo`, preferred first (open_clip tries .safetensors before the pickle)."""
    url: str = ""
    """Direct download URL ('' when only on the Hub). For open_clip weights on the Hub too, the Hub is used."""

    @property
    def download_url(self) -> str:
        """The URL a download starts from: the Hub file when there is one, else `url` ('' when neither)."""
        if self.hf_repo and self.hf_filenames:
            endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
            return f"{endpoint}/{self.hf_repo}/resolve/main/{self.hf_filenames[0]}"
        return self.url


@dataclass(frozen=True)
class WeightsInfo:
    """One named weights file."""

    name: str
    """Catalogue name, the `--clip` / `atelier models pull` name: 'ViT-B-32:openai', 'sam_vit_b'."""
    kind: WeightsKind
    """'clip' (an open_clip CLIP model) or 'sam' (a segment-anything checkpoint)."""
    source: WeightsSource
    """Where the file is downloaded from."""
    approx_bytes: int
    """Approximate size of the file in bytes (0 when unknown)."""
    licence: str
    """SPDX licence id of the weights, or a sentence pointing at the model card."""
    description: str
    """One line for `atelier models list`."""
    filename: str
    """The file's name in the Atelier weights dir; for CLIP a stem, its suffix follows the imported file."""
    md5_prefix: str = ""
    """Leading hex digits of the file's MD5 ('' for no check); SAM files carry it in their names."""
    quick_gelu: bool = False
    """Whether the CLIP was trained with QuickGELU (all OpenAI models): the architecture must match."""
    mean: tuple[float, float, float] = OPENAI_DATASET_MEAN
    """Per-channel RGB mean the model was trained with, for inputs in [0, 1]."""
    std: tuple[float, float, float] = OPENAI_DATASET_STD
    """Per-channel RGB standard deviation the model was trained with."""
    sam_type: str = ""
    """segment-anything model type ('vit_b', 'vit_l', 'vit_h'); '' for CLIP."""
    extra: dict = field(default_factory=dict, compare=False)
    """Anything else open_clip's pretrained config carries (interpolation, resize_mode), for reference."""

    @property
    def display_file(self) -> str:
        """The file name a user sees: the Hub file, else the URL's last part, else the store name."""
        if self.source.hf_filenames:
            return self.source.hf_filenames[0]
        if self.source.url:
            return self.source.url.rsplit("/", 1)[-1]
        return self.filename


CATALOGUE: dict[str, WeightsInfo] = {}
"""Every known weights file by name. Add with `register()`; a duplicate name is an error."""


def register(info: WeightsInfo) -> WeightsInfo:
    """Adds `info` to `CATALOGUE`; raises ValueError when the name is taken."""
    if info.name in CATALOGUE:
        raise ValueError(f"weights name {info.name!r} is already in the catalogue; pick another name")
    CATALOGUE[info.name] = info
    return info


def human_size(num_bytes: int) -> str:
    """'605 MB', '1.71 GB'; 'size unknown' for 0."""
    if num_bytes <= 0:
        return "size unknown"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if num_bytes >= scale:
            value = num_bytes / scale
            return f"{value:.2f} {unit}" if unit == "GB" else f"{value:.0f} {unit}"
    return f"{num_bytes} B"


def store_stem(name: str) -> str:
    """A file-system-safe stem for `name` (':' is not allowed in Windows file names)."""
    return name.replace(":", "--").replace("/", "_")


def _hf_candidates(filename: str) -> tuple[str, ...]:
    """The files open_clip would try for a Hub entry, preferred first (mirrors its `_get_safe_alternatives`)."""
    filename = filename or HF_WEIGHTS_NAME
    names: list[str] = []
    if HAS_SAFETENSORS:
        if filename == HF_WEIGHTS_NAME:
            names.append(HF_SAFE_WEIGHTS_NAME)
        elif filename.endswith((".bin", ".pth")):
            names.append(filename[:-4] + ".safetensors")
    names.append(filename)
    return tuple(names)


def clean_tag(tag: str) -> str:
    """open_clip's tag normalisation: 'LAION2B-s34b' -> 'laion2b_s34b'."""
    return tag.lower().replace("-", "_")


def open_clip_info(model: str, tag: str, approx_bytes: int = 0, licence: str = "",
                   description: str = "") -> WeightsInfo:
    """A `WeightsInfo` for open_clip's pretrained `model`/`tag`, with source and preprocessing from open_clip.

    When this open_clip does not know the pair the source is empty, and a pull says to upgrade open_clip.
    """
    tag = clean_tag(tag)
    cfg = open_clip.get_pretrained_cfg(model, tag)
    hf_hub = cfg.get("hf_hub", "") or ""
    # open_clip writes 'org/repo/' (default file) or 'org/repo/file.bin'.
    hf_repo, hf_file = posixpath.split(hf_hub) if hf_hub else ("", "")
    source = WeightsSource(
        open_clip_model=model,
        open_clip_tag=tag,
        hf_repo=hf_repo,
        hf_filenames=_hf_candidates(hf_file) if hf_hub else (),
        url=cfg.get("url", "") or "",
    )
    name = f"{model}:{tag}"
    if not licence:
        card = f"https://huggingface.co/{source.hf_repo}" if source.hf_repo else "the open_clip README"
        licence = f"unknown: see {card}"
    return WeightsInfo(
        name=name,
        kind="clip",
        source=source,
        approx_bytes=approx_bytes,
        licence=licence,
        description=description or f"open_clip {model} pretrained on {tag}",
        filename=store_stem(name),
        quick_gelu=bool(cfg.get("quick_gelu", False)),
        mean=tuple(cfg.get("mean", OPENAI_DATASET_MEAN)),
        std=tuple(cfg.get("std", OPENAI_DATASET_STD)),
        extra={k: cfg[k] for k in ("interpolation", "resize_mode") if k in cfg},
    )


def _sam_info(sam_type: str, filename: str, approx_bytes: int, description: str) -> WeightsInfo:
    return WeightsInfo(
        name=f"sam_{sam_type}",
        kind="sam",
        source=WeightsSource(url=f"https://dl.fbaipublicfiles.com/segment_anything/{filename}"),
        approx_bytes=approx_bytes,
        licence=APACHE_2,
        description=description,
        filename=filename,
        # The six hex digits in the official file names are the start of each file's MD5.
        md5_prefix=filename.rsplit("_", 1)[-1].split(".")[0],
        sam_type=sam_type,
    )


# Sizes are fp32 state dicts (parameter count x 4 bytes) for CLIP, the official file sizes for SAM.
register(open_clip_info("ViT-B-32", "openai", 605_109_252, MIT, "OpenAI CLIP ViT-B/32, 224 px (the default)"))
register(open_clip_info("ViT-B-16", "openai", 598_482_948, MIT, "OpenAI CLIP ViT-B/16, 224 px"))
register(open_clip_info("ViT-L-14", "openai", 1_710_466_052, MIT, "OpenAI CLIP ViT-L/14, 224 px (slow on CPU)"))
register(open_clip_info("RN50", "openai", 408_241_760, MIT, "OpenAI CLIP ResNet-50, 224 px"))
register(open_clip_info("ViT-B-32", "laion2b_s34b_b79k", 605_109_252, MIT, "OpenCLIP ViT-B/32 trained on LAION-2B"))
register(open_clip_info("ViT-B-16", "laion2b_s34b_b88k", 598_482_948, MIT, "OpenCLIP ViT-B/16 trained on LAION-2B"))
register(_sam_info("vit_b", "sam_vit_b_01ec64.pth", 375_042_383, "Segment Anything ViT-B (fastest)"))
register(_sam_info("vit_l", "sam_vit_l_0b3195.pth", 1_249_524_607, "Segment Anything ViT-L"))
register(_sam_info("vit_h", "sam_vit_h_4b8939.pth", 2_564_550_879, "Segment Anything ViT-H (best, slowest)"))


def lookup(name: str) -> WeightsInfo:
    """The catalogue entry for `name`; any open_clip `MODEL:TAG` pair works too (licence then unknown).

    Raises InvalidInputError naming the known names when there is no such weights file.
    """
    if name in CATALOGUE:
        return CATALOGUE[name]
    if ":" in name:
        model, tag = name.split(":", 1)
        normalised = f"{model}:{clean_tag(tag)}"
        if normalised in CATALOGUE:
            return CATALOGUE[normalised]
        if open_clip.get_pretrained_cfg(model, tag):
            return open_clip_info(model, tag)
    raise InvalidInputError(
        f"unknown weights name {name!r}",
        hint=f"use one of {', '.join(CATALOGUE)} (see `atelier models list`) or any open_clip MODEL:TAG pair",
    )
