"""Shaded, differentiable mesh rendering on top of the rasterizer contract."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from backend.render import raster_compiled
from backend.render.camera import Cameras, to_clip
from backend.render.rasterizer import RasterizerConfig, make_rasterizer
from backend.render.shading import ShadingConfig, phong, vertex_normals


@dataclass
class RenderConfig:
    """A shaded render of a mesh."""

    size: int = 224
    """Output height and width in pixels."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Background colour, RGB in [0, 1]."""
    antialias: bool = True
    """Analytic silhouette antialiasing; it is also what gives gradients w.r.t. the silhouette."""
    default_color: tuple[float, float, float] = (0.7, 0.7, 0.7)
    """Albedo when the mesh has neither vertex colours nor a texture."""
    light_height: float = 0.6
    """Point light: at the camera raised by this fraction of its distance along world +Y."""
    rasterizer: RasterizerConfig = field(default_factory=RasterizerConfig)
    """Which rasterizer implementation runs."""
    shading: ShadingConfig = field(default_factory=ShadingConfig)
    """Phong parameters."""


@dataclass
class RenderOutput:
    """Everything a render produces; images are top row first (ready to save or feed to CLIP)."""

    image: torch.Tensor
    """[B, H, W, 3] float32 shaded colour over the background, in [0, 1]."""
    alpha: torch.Tensor
    """[B, H, W, 1] float32 coverage (antialiased when enabled)."""
    normal: torch.Tensor
    """[B, H, W, 3] interpolated world-space unit normals, zero on the background."""
    position: torch.Tensor
    """[B, H, W, 3] world-space surface positions, zero on the background."""
    face_id: torch.Tensor
    """[B, H, W] int64 triangle index, -1 on the background."""


class MeshRenderer:
    """Renders meshes from batches of cameras with one rasterizer, on one device."""

    def __init__(self, config: RenderConfig | None = None, device: torch.device | str = "cpu"):
        self.config = config or RenderConfig()
        self.device = torch.device(device)
        self.rasterizer = make_rasterizer(self.config.rasterizer, self.device)

    @property
    def name(self) -> str:
        return self.rasterizer.name

    def default_lights(self, cameras: Cameras) -> torch.Tensor:
        """[B, 3] point-light positions: above each camera."""
        lift = cameras.eye.norm(dim=-1, keepdim=True) * self.config.light_height
        return cameras.eye + lift * torch.tensor([0.0, 1.0, 0.0], device=cameras.eye.device)

    def render(self, vertices: torch.Tensor, faces: torch.Tensor, cameras: Cameras, *,
               vertex_colors: torch.Tensor | None = None, uv: torch.Tensor | None = None,
               texture: torch.Tensor | None = None, normals: torch.Tensor | None = None,
               lights: torch.Tensor | None = None, shade: bool = True) -> RenderOutput:
        """Renders one mesh from every camera.

        vertices: [V, 3] or [B, V, 3] float32 world positions (differentiable).
        faces: [F, 3] int32.
        vertex_colors: [V, 3] or [B, V, 3] albedo in [0, 1] (differentiable), or
        uv: [V, 2] with texture: [Ht, Wt, 3] float32 in [0, 1], row 0 at v = 0 (differentiable).
        normals: [V, 3] shading normals (default: area-weighted vertex normals of `vertices`).
        lights: [B, 3] point-light positions (default: `default_lights`).
        shade: False returns the albedo unlit (useful for colour-only losses).
        """
        if texture is not None:
            if uv is None:
                raise ValueError("a texture needs per-vertex uv [V, 2]")
            return self.render_textures(vertices, faces, cameras, uv, [(texture, shade)], normals=normals,
                                        lights=lights)[0]
        if vertex_colors is None:
            vertex_colors = torch.tensor(self.config.default_color, device=self.device).expand(vertices.shape[-2], 3)
        surface = self._surface(vertices, faces, cameras, normals, vertex_colors)
        return self._compose(surface, 6, shade, lights, self._geometry(surface))

    def render_textures(self, vertices: torch.Tensor, faces: torch.Tensor, cameras: Cameras, uv: torch.Tensor,
                        textures: list[tuple], *, normals: torch.Tensor | None = None,
                        lights: torch.Tensor | None = None) -> list[RenderOutput]:
        """`render` of one mesh under several textures, each (texture, shade) or (texture, shade, antialias), from
        the same cameras: one rasterization, one interpolation and one lookup per distinct texture serve them all
        (a restyle step renders its texture lit and unlit and the original texture lit). antialias False skips
        the silhouette blend (`RenderConfig.antialias` off for that image: alpha is then the hard coverage)."""
        surface = self._surface(vertices, faces, cameras, normals, uv)
        lookup = surface.values[None, :, None, 6:8].contiguous()
        geometry = self._geometry(surface)
        outputs, looked_up = [], {}
        for texture, shade, *rest in textures:
            if id(texture) not in looked_up:  # a texture asked for lit and unlit is looked up once
                tex = texture[None].to(surface.clip.dtype).contiguous()
                looked_up[id(texture)] = self.rasterizer.texture(tex, lookup)[0, :, 0, :3]
            antialias = rest[0] if rest else True
            outputs.append(self._compose(surface, looked_up[id(texture)], shade, lights, geometry, antialias))
        return outputs

    def _surface(self, vertices: torch.Tensor, faces: torch.Tensor, cameras: Cameras, normals: torch.Tensor | None,
                 extra: torch.Tensor) -> "_Surface":
        """Rasterizes the mesh and interpolates position, normal and `extra` ([V, C] or [B, V, C]) at the
        covered pixels."""
        cfg = self.config
        cameras = cameras.to(self.device)
        faces = faces.to(self.device).int()
        batch = len(cameras)
        clip = to_clip(vertices, cameras).contiguous()
        rast = self.rasterizer.rasterize(clip, faces, (cfg.size, cfg.size))
        kernel = getattr(self.rasterizer, "kernel", None) if self.device.type == "cpu" else None
        if normals is None:
            normals = vertex_normals(vertices, faces) if kernel is None else \
                raster_compiled.vertex_normals(kernel, vertices, faces)
        attrs = [vertices, normals, extra]
        attr = torch.cat([(a if a.dim() == 3 else a.expand(batch, -1, -1)).to(clip.dtype) for a in attrs],
                         dim=-1).contiguous()
        # Shade covered pixels only: a sparse list is cheaper than full images, forward and backward.
        pixels = torch.nonzero(rast[..., 3].reshape(-1) > 0).squeeze(1)
        values = self.rasterizer.interpolate_pixels(attr, rast, faces, pixels)
        view_of = torch.div(pixels, cfg.size * cfg.size, rounding_mode="floor")
        return _Surface(cameras, faces, clip, rast, pixels, values, view_of, kernel)

    def _geometry(self, surface: "_Surface") -> torch.Tensor:
        """Unit normals and positions at every pixel, [B, H, W, 6] top-down, zero on the background (one scatter
        and one flip)."""
        size, batch = self.config.size, len(surface.cameras)
        unit_normal = torch.nn.functional.normalize(surface.values[:, 3:6], dim=-1, eps=1e-12)
        geometry = surface.clip.new_zeros(batch * size * size, 6)
        geometry.index_copy_(0, surface.pixels, torch.cat([unit_normal, surface.values[:, 0:3]], 1))
        return torch.flip(geometry.reshape(batch, size, size, 6), dims=[1])

    def _compose(self, surface: "_Surface", albedo: torch.Tensor | int, shade: bool, lights: torch.Tensor | None,
                 geometry: torch.Tensor, antialias: bool = True) -> RenderOutput:
        """Shades `albedo` at the surface's pixels ([P, 3], or the column of `surface.values` where it starts),
        over the background, antialiased unless `antialias` is False."""
        cfg = self.config
        cameras, rast, pixels, clip, kernel = surface.cameras, surface.rast, surface.pixels, surface.clip, surface.kernel
        batch = len(cameras)
        position, normal = surface.values[:, 0:3], surface.values[:, 3:6]
        colours = surface.values[:, albedo:albedo + 3] if isinstance(albedo, int) else albedo
        if shade:
            if lights is None:
                lights = self.default_lights(cameras)
            if kernel is not None and not (cameras.eye.requires_grad or lights.requires_grad):
                # One pass per pixel each way, reading the interpolated attributes in place.
                color = raster_compiled.phong(kernel, surface.values, 0, 3, albedo, cameras.eye, lights,
                                              surface.view_of, cfg.shading, clamp=True)
            else:
                view_of = surface.view_of
                color = phong(colours, position, normal, cameras.eye[view_of], lights[view_of],
                              cfg.shading).clamp(0, 1)
        else:
            color = colours
        # Colour and coverage in one [B * H * W, 4] image: one scatter over the background.
        background = torch.tensor((*cfg.background, 0.0), dtype=clip.dtype, device=self.device)
        covered_layers = torch.cat([color.to(clip.dtype), torch.ones_like(color[:, :1], dtype=clip.dtype)], dim=1)
        layers = background.repeat(batch * cfg.size * cfg.size, 1)
        layers.index_copy_(0, pixels, covered_layers)  # in place: a fresh image, not another copy of one
        layers = layers.reshape(batch, cfg.size, cfg.size, 4)
        if cfg.antialias and antialias:
            layers = self.rasterizer.antialias(layers.contiguous(), rast, clip, surface.faces)
        layers = torch.flip(layers, dims=[1])  # OpenGL rows are bottom-up; images are top-down

        return RenderOutput(
            image=layers[..., 0:3],
            alpha=layers[..., 3:4],
            normal=geometry[..., 0:3],
            position=geometry[..., 3:6],
            face_id=torch.flip(rast.detach(), dims=[1])[..., 3].long() - 1,  # a contiguous flip is the cheap one
        )


@dataclass
class _Surface:
    """What every texture of one `MeshRenderer` pass shares: the rasterization and the interpolated attributes."""

    cameras: Cameras
    faces: torch.Tensor
    clip: torch.Tensor
    rast: torch.Tensor
    pixels: torch.Tensor
    """[P] covered pixels into the flat [B * H * W] image."""
    values: torch.Tensor
    """[P, 6 + C] position, normal and the extra attribute at those pixels."""
    view_of: torch.Tensor
    """[P] the view each pixel belongs to."""
    kernel: object | None
    """The compiled CPU kernel (`backend.render.kernel`), or None: the pure-PyTorch shading."""
