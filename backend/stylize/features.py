"""Feature maps for nearest-neighbour style losses: intermediate layers of a CLIP image tower, or VGG-16.

Mishra & Granskog match features of CLIP-ResNet50's intermediate stages; ARF (Zhang et al. 2022), whose
NNFM loss they extend, matches VGG-16's block-3 activations. A ViT CLIP has no feature maps, so its patch
tokens after intermediate transformer blocks stand in for them. Every extractor maps images
[B, 3, H, W] float in [0, 1] to one feature map [B, C, h, w] per requested layer, differentiably.

Input sizes: the convolutional towers (CLIP ModifiedResNet, VGG) take images at their own resolution, so a
512-px render gives 4x the positions of a 256-px one. Each downsampling halves a side rounding down, so a
side that is not a multiple of a layer's stride just gives that layer a grid of about side / stride; a side
shorter than the deepest layer's stride is refused. A ViT takes only its training size (the positional
embedding is fixed): images go through `ClipModel.preprocess` (shorter side resized to `image_size`, the
longer centre-cropped).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import torch
import torch.nn as nn
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer
from torchvision.models import vgg as tv_vgg

from backend.errors import InvalidInputError, WeightsMissingError
from backend.models.clip import ClipModel

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel RGB mean of torchvision's ImageNet preprocessing, for inputs in [0, 1]."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel RGB standard deviation of torchvision's ImageNet preprocessing."""

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
"""torchvision's `VGG16_Weights.IMAGENET1K_V1` file; torch hub caches it as checkpoints/<its name>."""
VGG16_BYTES = 553_433_881
"""Size of that file (528 MiB)."""


@dataclass(frozen=True)
class FeatureConfig:
    """Which network supplies the feature maps, and at which layers."""

    extractor: Literal["clip", "vgg16"] = "clip"
    """"clip": the image tower of the run's CLIP (ModifiedResNet stages or ViT blocks); "vgg16": VGG-16."""
    layers: tuple[str, ...] | None = None
    """Layer names ("layer1".."layer4" for a ResNet tower, "block1".."blockN" for a ViT, "conv1_1".."conv5_3"
    for VGG); None takes the tower's default (`DEFAULT_RESNET_LAYERS`, `default_vit_layers`,
    `DEFAULT_VGG_LAYERS`)."""
    vgg_weights: Literal["imagenet"] | None = "imagenet"
    """"imagenet": torchvision's ImageNet VGG-16, read offline from the torch hub cache; None: seeded random
    weights (tests only)."""


class FeatureExtractor:
    """images [B, 3, H, W] float in [0, 1] -> a list with one [B, C_l, h_l, w_l] float32 map per layer of
    `layers` (in that order), on the extractor's device, differentiable with respect to `images`.

    The network's parameters are frozen and it runs in eval mode. Subclasses set `kind` and implement
    `forward`.
    """

    kind: str = ""
    """The network family, the first part of `name`: "clip-resnet", "clip-vit", "vgg16"."""
    layers: tuple[str, ...]
    """The layers whose maps `__call__` returns, in network order."""
    device: torch.device
    """Where the network runs; images are moved here."""

    def __init__(self, layers: tuple[str, ...], device: torch.device):
        self.layers = layers
        self.device = device

    @property
    def name(self) -> str:
        """The network and its layers, e.g. "clip-resnet:layer2+layer3"."""
        return f"{self.kind}:{'+'.join(self.layers)}"

    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3 \
                or not images.is_floating_point():
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise InvalidInputError(f"feature extraction takes [B, 3, H, W] float images in [0, 1], got {shape}",
                                    hint="add a batch axis with images[None] / drop alpha with images[:, :3]")
        return self.forward(images.to(self.device, torch.float32))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError


def _pick_layers(requested: Sequence[str] | None, valid: Sequence[str], default: Sequence[str],
                 what: str) -> tuple[str, ...]:
    """`requested` (or `default` when None) deduplicated in network order; InvalidInputError for unknown names."""
    names = tuple(default if requested is None else requested)
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        problem = f"unknown layers {', '.join(map(repr, unknown))}" if unknown else "no layers"
        raise InvalidInputError(f"{problem} for {what}", hint=f"choose from {', '.join(valid)}")
    return tuple(name for name in valid if name in names)


def _normaliser(mean: Sequence[float], std: Sequence[float], device: torch.device):
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return lambda x: (x - mean_t) / std_t


def _check_side(images: torch.Tensor, stride: int, layer: str, what: str) -> None:
    if min(images.shape[-2:]) < stride:
        raise InvalidInputError(f"{what} needs images of at least {stride} px a side for {layer}, "
                                f"got {tuple(images.shape[-2:])}", hint="render or resize the images larger")


# ---------------------------------------------------------------------------------------------- CLIP ResNet


RESNET_LAYERS = ("layer1", "layer2", "layer3", "layer4")
"""The ModifiedResNet stages, at strides 4, 8, 16 and 32."""
DEFAULT_RESNET_LAYERS = ("layer2", "layer3")
"""Mid-level stages (strides 8 and 16): textures and motifs rather than the objects layer4 encodes."""


class ClipResNetFeatures(FeatureExtractor):
    """Stage outputs of a CLIP ModifiedResNet (stem, then layer1..layer4; the attention pool never runs),
    on images at their own size normalised with the CLIP's mean and std. Stops after the last requested stage.
    """

    kind = "clip-resnet"

    def __init__(self, clip: ClipModel, layers: Sequence[str] | None = None):
        if not isinstance(clip.model.visual, ModifiedResNet):
            raise ValueError(f"{clip.name} has a {type(clip.model.visual).__name__} image tower, not a ModifiedResNet")
        super().__init__(_pick_layers(layers, RESNET_LAYERS, DEFAULT_RESNET_LAYERS, f"{clip.name}'s ResNet"),
                         clip.device)
        self.tower = clip.model.visual
        self.normalise = _normaliser(clip.mean, clip.std, self.device)
        self.last = RESNET_LAYERS.index(self.layers[-1])

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        _check_side(images, 4 * 2 ** self.last, self.layers[-1], "the CLIP ResNet")
        tower = self.tower
        x = tower.stem(self.normalise(images).to(tower.conv1.weight.dtype))
        out = []
        for name in RESNET_LAYERS[:self.last + 1]:
            x = getattr(tower, name)(x)
            if name in self.layers:
                out.append(x.float())
        return out


# ---------------------------------------------------------------------------------------------- CLIP ViT


def default_vit_layers(depth: int) -> tuple[str, ...]:
    """The blocks nearest 1/3 and 2/3 of the depth (1-based): block4 and block8 of a 12-block ViT-B, block8
    and block16 of a 24-block ViT-L, only block1 of a 2-block tiny ViT."""
    return tuple(f"block{i}" for i in sorted({max(1, round(depth * k / 3)) for k in (1, 2)}))


class ClipViTFeatures(FeatureExtractor):
    """Patch tokens of a CLIP VisionTransformer after intermediate blocks, as [B, width, g, g] grids (the class
    token dropped). Images go through `ClipModel.preprocess` (resized to `image_size`, centre-cropped,
    normalised); blocks after the last requested one never run.
    """

    kind = "clip-vit"

    def __init__(self, clip: ClipModel, layers: Sequence[str] | None = None):
        tower = clip.model.visual
        if not isinstance(tower, VisionTransformer):
            raise ValueError(f"{clip.name} has a {type(tower).__name__} image tower, not a VisionTransformer")
        depth = len(tower.transformer.resblocks)
        valid = tuple(f"block{i}" for i in range(1, depth + 1))
        super().__init__(_pick_layers(layers, valid, default_vit_layers(depth), f"{clip.name}'s ViT"), clip.device)
        self.clip = clip
        self.tower = tower
        self.take = [valid.index(name) for name in self.layers]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        tower = self.tower
        x = tower.conv1(self.clip.preprocess(images).to(tower.conv1.weight.dtype))  # [B, width, g, g]
        batch, width, grid_h, grid_w = x.shape
        x = x.flatten(2).transpose(1, 2)
        cls = tower.class_embedding.to(x.dtype).expand(batch, 1, width)
        x = torch.cat([cls, x], dim=1) + tower.positional_embedding.to(x.dtype)
        x = tower.ln_pre(tower.patch_dropout(x))
        # open_clip (>= 2.26) builds batch-first blocks by default; a sequence-first stack takes (L, N, D).
        batch_first = tower.transformer.batch_first
        if not batch_first:
            x = x.transpose(0, 1)
        out = []
        for index, block in enumerate(tower.transformer.resblocks[:self.take[-1] + 1]):
            x = block(x)
            if index in self.take:
                tokens = (x if batch_first else x.transpose(0, 1))[:, 1:]
                out.append(tokens.transpose(1, 2).reshape(batch, width, grid_h, grid_w).float())
        return out


# ---------------------------------------------------------------------------------------------- VGG-16


def _vgg_names(layers: nn.Sequential) -> dict[str, int]:
    """"convB_I" -> index in `layers` of the ReLU after the I-th conv of block B (ARF's naming)."""
    names, block, conv = {}, 1, 0
    for index, module in enumerate(layers):
        if isinstance(module, nn.Conv2d):
            conv += 1
        elif isinstance(module, nn.ReLU):
            names[f"conv{block}_{conv}"] = index
        elif isinstance(module, nn.MaxPool2d):
            block, conv = block + 1, 0
    return names


DEFAULT_VGG_LAYERS = ("conv3_1", "conv3_2", "conv3_3")
"""ARF's NNFM layers: the ReLU outputs of VGG-16's third block (stride 4)."""


def vgg16_weights_path() -> Path:
    """Where torchvision (torch hub) caches the ImageNet VGG-16 file, read at call time (TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_URL.rsplit("/", 1)[-1]


class VGGFeatures(FeatureExtractor):
    """ReLU outputs of torchvision's VGG-16 `features` at ARF-named layers ("conv3_1" is the ReLU after the
    first conv of block 3), on images at their own size with ImageNet normalisation. Only the layers up to the
    last requested one are built and loaded.
    """

    kind = "vgg16"

    def __init__(self, layers: Sequence[str] | None = None, weights: Literal["imagenet"] | None = "imagenet",
                 device: torch.device | str = "cpu"):
        if weights not in ("imagenet", None):
            raise ValueError(f"vgg_weights must be 'imagenet' or None, got {weights!r}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # seeds the random weights (vgg_weights=None); the global RNG stays untouched
            full = tv_vgg.make_layers(tv_vgg.cfgs["D"])
        names = _vgg_names(full)
        super().__init__(_pick_layers(layers, tuple(names), DEFAULT_VGG_LAYERS, "VGG-16"), torch.device(device))
        self.take = [names[name] for name in self.layers]
        self.net = full[:self.take[-1] + 1]
        self.stride = 2 ** sum(isinstance(m, nn.MaxPool2d) for m in self.net)
        if weights == "imagenet":
            _load_imagenet_vgg16(self.net)
        self.net = self.net.to(self.device).eval().requires_grad_(False)
        self.normalise = _normaliser(IMAGENET_MEAN, IMAGENET_STD, self.device)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        _check_side(images, self.stride, self.layers[-1], "VGG-16")
        x = self.normalise(images)
        out = []
        # The in-place ReLUs only ever overwrite conv outputs, never a map already returned.
        for index, module in enumerate(self.net):
            x = module(x)
            if index in self.take:
                out.append(x)
        return out


def _load_imagenet_vgg16(net: nn.Sequential) -> None:
    """Loads the first len(net) modules of the cached ImageNet VGG-16 `features` into `net`.
    WeightsMissingError when the file is absent, unreadable, or not VGG-16."""
    path = vgg16_weights_path()
    if not path.is_file():
        raise WeightsMissingError(
            f"the ImageNet VGG-16 weights are not on this machine ({path.name}, {VGG16_BYTES / 2**20:.0f} MiB, "
            f"torchvision's VGG16_Weights.IMAGENET1K_V1); looked for {path}",
            hint=f"download {VGG16_URL} to {path} (torchvision.models.vgg16(weights='IMAGENET1K_V1') does it on a "
                 "machine with network), or use the CLIP features")
    prefix = "features."
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict({key[len(prefix):]: value for key, value in state.items()
                             if key.startswith(prefix) and int(key[len(prefix):].split(".")[0]) < len(net)})
    except (RuntimeError, OSError, EOFError, ValueError, AttributeError, pickle.UnpicklingError) as exc:
        raise WeightsMissingError(f"could not load {path} as VGG-16 weights: {str(exc).splitlines()[0][:300]}",
                                  hint=f"the file may be damaged: delete it and download {VGG16_URL} again") from exc


# ---------------------------------------------------------------------------------------------- building


def make_extractor(config: FeatureConfig, clip: ClipModel | None, device: torch.device | str) -> FeatureExtractor:
    """The extractor `config` names. "clip" needs `clip` (and runs on its device); "vgg16" runs on `device`."""
    if config.extractor == "vgg16":
        return VGGFeatures(config.layers, config.vgg_weights, device)
    if config.extractor != "clip":
        raise InvalidInputError(f"unknown feature extractor {config.extractor!r}", hint="use 'clip' or 'vgg16'")
    if clip is None:
        raise ValueError("the 'clip' feature extractor needs a ClipModel; pass one, or use extractor='vgg16'")
    if clip.tower == "resnet":
        return ClipResNetFeatures(clip, config.layers)
    return ClipViTFeatures(clip, config.layers)
