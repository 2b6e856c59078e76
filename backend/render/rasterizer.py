"""One rasterizer contract, two implementations: nvdiffrast (CUDA) and pure PyTorch (anywhere).

Both follow nvdiffrast's conventions (see `raster_torch`), so callers never branch on which is in use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from backend import external
from backend.errors import DependencyMissingError
from backend.render import raster_compiled, raster_torch
from backend.render.kernel import KERNEL_CHOICES, kernel_choice, load_kernel

IMPLEMENTATIONS = ("auto", "nvdiffrast", "torch")


@dataclass
class RasterizerConfig:
    """Which rasterizer runs and how."""

    implementation: Literal["auto", "nvdiffrast", "torch"] = "auto"
    """`auto` uses nvdiffrast when it is installed and the device is CUDA, else the PyTorch one."""
    max_pairs: int = 1 << 22
    """PyTorch path: the most (triangle, pixel) candidates enumerated at once (bounds memory)."""
    kernel: Literal["auto", "compiled", "pure"] = "auto"
    """PyTorch implementation on the CPU: `auto` runs the compiled C++ kernel (`backend.render.kernel`, built on
    first use) and falls back to pure PyTorch, with one logged line, where it cannot be built; `compiled` makes a
    failed build an error; `pure` never builds it. `$ATELIER_RASTER_KERNEL` overrides this."""


class TorchRasterizer:
    """The PyTorch implementation: on the CPU with the compiled kernel's hot loops when it builds
    (`kernel_path` "compiled"), else pure PyTorch (`kernel_path` "pure"); both give the same results."""

    name = "torch"

    def __init__(self, config: RasterizerConfig, device: torch.device):
        self.config = config
        self.device = device
        self._topology: tuple[torch.Tensor, object] | None = None
        self.kernel = load_kernel(config.kernel) if device.type == "cpu" else None
        self.kernel_path = "compiled" if self.kernel is not None else "pure"

    def _compiled(self, *tensors: torch.Tensor) -> bool:
        return self.kernel is not None and all(t.device.type == "cpu" for t in tensors)

    def rasterize(self, pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
        """pos: [B, V, 4] clip; tri: [F, 3] int32 -> rast [B, H, W, 4] (u, v, z/w, id + 1)."""
        if self._compiled(pos, tri):
            return raster_compiled.rasterize(self.kernel, pos, tri, resolution)
        return raster_torch.rasterize(pos, tri, resolution, max_pairs=self.config.max_pairs)

    def interpolate(self, attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
        """attr: [V, C] or [B, V, C] -> [B, H, W, C]."""
        if self._compiled(attr, rast, tri):
            return raster_compiled.interpolate(self.kernel, attr, rast, tri)
        return raster_torch.interpolate(attr, rast, tri)

    def interpolate_pixels(self, attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor,
                           pixels: torch.Tensor) -> torch.Tensor:
        """`interpolate` at covered pixels only: pixels [P] into the flat [B * H * W] image -> [P, C]."""
        if self._compiled(attr, rast, tri):
            return raster_compiled.interpolate_pixels(self.kernel, attr, rast, tri, pixels)
        return raster_torch.interpolate_pixels(attr, rast, tri, pixels)

    def texture(self, tex: torch.Tensor, uv: torch.Tensor, boundary_mode: str = "wrap") -> torch.Tensor:
        """tex: [B|1, Ht, Wt, C]; uv: [B, H, W, 2] -> [B, H, W, C] bilinear."""
        return raster_torch.texture(tex, uv, boundary_mode)

    def antialias(self, color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
        """Silhouette antialiasing with position gradients; color [B, H, W, C]."""
        topology = _cached_topology(self, tri, raster_torch.edge_topology)
        if self._compiled(color, rast, pos, tri):
            return raster_compiled.antialias(self.kernel, color, rast, pos, tri, topology)
        return raster_torch.antialias(color, rast, pos, tri, topology)


class NvdiffrastRasterizer:
    """nvdiffrast's CUDA rasterizer behind the same contract."""

    name = "nvdiffrast"

    def __init__(self, config: RasterizerConfig, device: torch.device):
        self.dr = external.require_nvdiffrast()
        if device.type != "cuda":
            raise DependencyMissingError("the nvdiffrast rasterizer needs a CUDA device",
                                         hint="use --device cuda, or implementation='torch' on this device")
        self.config = config
        self.device = device
        self.context = self.dr.RasterizeCudaContext(device=device)
        self._topology: tuple[torch.Tensor, object] | None = None

    def rasterize(self, pos, tri, resolution):
        pos = pos if pos.dim() == 3 else pos.unsqueeze(0)
        rast, _ = self.dr.rasterize(self.context, pos.contiguous(), tri.int().contiguous(), tuple(resolution))
        return rast

    def interpolate(self, attr, rast, tri):
        out, _ = self.dr.interpolate(attr.contiguous(), rast, tri.int().contiguous())
        return out

    def interpolate_pixels(self, attr, rast, tri, pixels):
        out = self.interpolate(attr, rast, tri)
        return out.reshape(-1, out.shape[-1]).index_select(0, pixels)

    def texture(self, tex, uv, boundary_mode="wrap"):
        return self.dr.texture(tex.contiguous(), uv.contiguous(), filter_mode="linear", boundary_mode=boundary_mode)

    def antialias(self, color, rast, pos, tri):
        pos = pos if pos.dim() == 3 else pos.unsqueeze(0)
        topology = _cached_topology(self, tri, lambda t: self.dr.antialias_construct_topology_hash(t.int().contiguous()))
        return self.dr.antialias(color.contiguous(), rast, pos.contiguous(), tri.int().contiguous(), topology_hash=topology)


Rasterizer = TorchRasterizer | NvdiffrastRasterizer


def _cached_topology(rasterizer: Rasterizer, tri: torch.Tensor, build):
    """The edge topology of `tri`, rebuilt only when the faces change (compared by content, O(F)).

    Keyed by content, not by address: a freed faces tensor's memory can hold the next mesh's faces.
    """
    cached = rasterizer._topology
    if cached is None or cached[0].shape != tri.shape or cached[0].device != tri.device or not torch.equal(cached[0], tri):
        cached = (tri.detach().clone(), build(tri))
        rasterizer._topology = cached  # one mesh at a time is the common case
    return cached[1]


def make_rasterizer(config: RasterizerConfig | None = None, device: torch.device | str = "cpu") -> Rasterizer:
    """Builds the configured rasterizer; errors name the fix when the choice cannot run here."""
    config = config or RasterizerConfig()
    device = torch.device(device)
    if config.implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {config.implementation!r}")
    if config.kernel not in KERNEL_CHOICES:
        raise ValueError(f"kernel must be one of {KERNEL_CHOICES}, got {config.kernel!r}")
    kernel_choice(config.kernel)  # a bad $ATELIER_RASTER_KERNEL is an error here, whichever implementation runs
    if config.implementation == "nvdiffrast":
        return NvdiffrastRasterizer(config, device)
    if config.implementation == "auto" and external.HAS_NVDIFFRAST and device.type == "cuda":
        return NvdiffrastRasterizer(config, device)
    return TorchRasterizer(config, device)


def renderer_name(device: torch.device | str, implementation: str = "auto") -> str:
    """Which implementation `make_rasterizer` would pick, without building it."""
    device = torch.device(device)
    if implementation == "nvdiffrast" or (implementation == "auto" and external.HAS_NVDIFFRAST and device.type == "cuda"):
        return "nvdiffrast"
    return "torch"
