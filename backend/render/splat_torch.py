"""The pure-PyTorch Gaussian splatting rasterizer (3DGS, Kerbl et al. 2023): EWA projection, tile binning,
per-tile depth sort and front-to-back alpha compositing. Runs on any device; gradients come from autograd.

Conventions shared with `backend.render.splat`'s gsplat path: the camera frame is OpenCV's (x right, y down,
z forward, i.e. OpenGL's with Y and Z flipped), pixel (row i, column j) has its centre at (j + 0.5, i + 0.5),
rows top first, the same pixel centres as `MeshRenderer` images.
"""

from __future__ import annotations

import math

import torch
from torch.utils.checkpoint import checkpoint

from backend.render.camera import Cameras

_CHUNK_ELEMENTS = 1 << 22
"""Tiles are composited in chunks of about this many (tile, pixel, Gaussian) entries."""
_CHECKPOINT_ABOVE = 1 << 24
"""With more (tile, pixel, Gaussian) entries than this in a render, each chunk is recomputed in the backward pass
(checkpointed) instead of keeping its intermediates (~10 floats an entry): memory stays bounded by one chunk."""


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """quats: [N, 4] (w, x, y, z), any norm > 0 -> [N, 3, 3] rotation matrices."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(-1, 3, 3)


def covariances(scales: torch.Tensor, quats: torch.Tensor) -> torch.Tensor:
    """[N, 3, 3] world-space covariances R S S^T R^T."""
    rs = quat_to_rotmat(quats) * scales[:, None, :]
    return rs @ rs.transpose(1, 2)


def opencv_cameras(cameras: Cameras, height: int, width: int, dtype: torch.dtype, device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Our OpenGL cameras as OpenCV ones: viewmats [B, 4, 4] world-to-camera (camera looks down +Z, +Y down) and
    pixel intrinsics Ks [B, 3, 3] for a (height, width) image whose pixel centres are at integer + 0.5."""
    view = cameras.view.to(device=device, dtype=dtype)
    proj = cameras.proj.to(device=device, dtype=dtype)
    flip = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=dtype, device=device)
    viewmats = flip[None, :, None] * view
    ks = torch.zeros(len(view), 3, 3, dtype=dtype, device=device)
    # x_ndc = P00 x/z - P02 and y_ndc = -(P11 y/z + P12) in OpenCV camera coordinates; u = (x_ndc + 1) W / 2,
    # v = (1 - y_ndc) H / 2 (rows top first).
    ks[:, 0, 0] = 0.5 * width * proj[:, 0, 0]
    ks[:, 1, 1] = 0.5 * height * proj[:, 1, 1]
    ks[:, 0, 2] = 0.5 * width * (1.0 - proj[:, 0, 2])
    ks[:, 1, 2] = 0.5 * height * (1.0 + proj[:, 1, 2])
    ks[:, 2, 2] = 1.0
    return viewmats, ks


def project(means: torch.Tensor, cov3d: torch.Tensor, opacities: torch.Tensor, viewmats: torch.Tensor,
            ks: torch.Tensor, height: int, width: int, near: float, blur: float, min_alpha: float):
    """EWA projection of N Gaussians into B cameras.

    Returns means2d [B, N, 2] pixels, conics [B, N, 3] (a, b, c of the inverse 2D covariance), depths [B, N]
    (camera z), radii [B, N] pixels (0 when culled: behind `near`, degenerate or off-screen).
    """
    rot, trans = viewmats[:, :3, :3], viewmats[:, :3, 3]
    cam = torch.einsum("bij,nj->bni", rot, means) + trans[:, None, :]
    z = cam[..., 2]
    in_front = z > near
    z_safe = torch.where(in_front, z, torch.ones_like(z))
    fx, fy = ks[:, 0, 0, None], ks[:, 1, 1, None]
    cx, cy = ks[:, 0, 2, None], ks[:, 1, 2, None]
    u = fx * cam[..., 0] / z_safe + cx
    v = fy * cam[..., 1] / z_safe + cy
    # As 3DGS and gsplat: the Jacobian is taken at a point clamped to 1.3x the field of view, so Gaussians far
    # outside the image do not get huge footprints.
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    tx = z_safe * torch.minimum(torch.maximum(cam[..., 0] / z_safe, -(cx / fx + 0.3 * tan_x)),
                                (width - cx) / fx + 0.3 * tan_x)
    ty = z_safe * torch.minimum(torch.maximum(cam[..., 1] / z_safe, -(cy / fy + 0.3 * tan_y)),
                                (height - cy) / fy + 0.3 * tan_y)
    zero = torch.zeros_like(z_safe)
    jac = torch.stack([fx / z_safe, zero, -fx * tx / z_safe ** 2,
                       zero, fy / z_safe, -fy * ty / z_safe ** 2], dim=-1).reshape(*z.shape, 2, 3)
    jw = jac @ rot[:, None]                                        # [B, N, 2, 3]
    cov2d = jw @ cov3d[None] @ jw.transpose(-1, -2)
    a = cov2d[..., 0, 0] + blur
    b = cov2d[..., 0, 1]
    c = cov2d[..., 1, 1] + blur
    det = a * c - b * b
    ok = in_front & (det > 0)
    det_safe = torch.where(ok, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    with torch.no_grad():
        # The radius where alpha falls to `min_alpha` along the major axis (<= 3.33 sigma at opacity 0.99): beyond
        # it every pixel's alpha is dropped anyway, so the tile cull loses nothing.
        mid = 0.5 * (a + c)
        lam = mid + torch.sqrt(torch.clamp(mid * mid - det, min=0.0))
        extent = torch.sqrt(2.0 * torch.log(torch.clamp(opacities / min_alpha, min=1.0)))[None]
        radii = torch.ceil(extent * torch.sqrt(lam))
        on_screen = (u + radii > 0) & (u - radii < width) & (v + radii > 0) & (v - radii < height)
        radii = torch.where(ok & on_screen & (radii > 0), radii, torch.zeros_like(radii))
    return torch.stack([u, v], dim=-1), conics, z, radii


def rasterize(means2d: torch.Tensor, conics: torch.Tensor, depths: torch.Tensor, radii: torch.Tensor,
              opacities: torch.Tensor, features: torch.Tensor, height: int, width: int, tile: int,
              min_alpha: float, max_alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Front-to-back compositing of projected Gaussians.

    means2d [B, N, 2], conics [B, N, 3], depths/radii [B, N], opacities [N], features [N, C] (colour, depth...
    per Gaussian; depth is appended here). Returns (features [B, H, W, C + 1] premultiplied sums of w_i f_i with
    the depth sum last, alpha [B, H, W])."""
    batch, count = depths.shape
    device, dtype = means2d.device, means2d.dtype
    tiles_x, tiles_y = math.ceil(width / tile), math.ceil(height / tile)
    n_tiles = tiles_x * tiles_y
    channels = features.shape[1] + 1
    pixels = tile * tile
    out = torch.zeros(batch * n_tiles, pixels, channels + 1, dtype=dtype, device=device)

    with torch.no_grad():
        flat = torch.nonzero(radii.reshape(-1) > 0).squeeze(1)        # index into B * N
        # Depth order first: the stable sort by tile below keeps it within each tile.
        flat = flat[torch.argsort(depths.reshape(-1)[flat], stable=True)]
        uv = means2d.detach().reshape(-1, 2)[flat]
        r = radii.reshape(-1)[flat]
        x0 = torch.clamp(torch.floor((uv[:, 0] - r) / tile), 0, tiles_x).long()
        x1 = torch.clamp(torch.floor((uv[:, 0] + r) / tile) + 1, 0, tiles_x).long()
        y0 = torch.clamp(torch.floor((uv[:, 1] - r) / tile), 0, tiles_y).long()
        y1 = torch.clamp(torch.floor((uv[:, 1] + r) / tile) + 1, 0, tiles_y).long()
        span_x = torch.clamp(x1 - x0, min=0)
        hits = span_x * torch.clamp(y1 - y0, min=0)
        owner = torch.repeat_interleave(torch.arange(len(flat), device=device), hits)
        if len(owner) == 0:
            return out.new_zeros(batch, height, width, channels), out.new_zeros(batch, height, width)
        first = torch.cumsum(hits, 0) - hits
        offset = torch.arange(len(owner), device=device) - first[owner]
        tile_x = x0[owner] + offset % span_x[owner]
        tile_y = y0[owner] + torch.div(offset, span_x[owner], rounding_mode="floor")
        key = torch.div(flat[owner], count, rounding_mode="floor") * n_tiles + tile_y * tiles_x + tile_x
        order = torch.argsort(key, stable=True)
        key, gauss = key[order], flat[owner][order]
        per_tile = torch.bincount(key, minlength=batch * n_tiles)
        start = torch.cumsum(per_tile, 0) - per_tile
        slot = torch.arange(len(key), device=device) - start[key]
        table = torch.full((batch * n_tiles, int(per_tile.max())), batch * count, dtype=torch.long, device=device)
        table[key, slot] = gauss
        # Pixel centres of every tile, [T, P, 2], in pixels.
        local = torch.arange(tile, device=device, dtype=dtype) + 0.5
        tiles = torch.arange(batch * n_tiles, device=device) % n_tiles
        px = (tiles % tiles_x)[:, None, None] * tile + local[None, None, :]
        py = torch.div(tiles, tiles_x, rounding_mode="floor")[:, None, None] * tile + local[None, :, None]
        centres = torch.stack([px.expand(-1, tile, tile), py.expand(-1, tile, tile)], -1).reshape(-1, pixels, 2)
        busy = torch.nonzero(per_tile > 0).squeeze(1)
        busy = busy[torch.argsort(per_tile[busy])]                    # similar lengths share a chunk's padding

    # Flat per-(camera, Gaussian) arrays with one extra all-zero row that padded table slots point at (opacity 0:
    # alpha 0, nothing composited). Conics become the coefficients of power = dx (A dx + B dy) + C dy^2.
    pad_row = lambda t: torch.cat([t, t.new_zeros(1, *t.shape[1:])])
    ones = torch.ones_like(depths[..., None])
    gauss_features = pad_row(torch.cat([features[None].expand(batch, -1, -1), depths[..., None], ones], -1)
                             .reshape(-1, channels + 1))
    gauss_opacity = pad_row(opacities[None].expand(batch, -1).reshape(-1))
    flat_means = pad_row(means2d.reshape(-1, 2))
    flat_coefs = pad_row((conics * torch.tensor([-0.5, -1.0, -0.5], dtype=dtype, device=device)).reshape(-1, 3))
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (means2d, conics, depths, opacities, features))

    def composite(index, centre, mean, coef, opac, feat):
        m, q = mean[index][:, None], coef[index][:, None]            # [t, 1, K, 2], [t, 1, K, 3]
        dx = centre[..., 0:1] - m[..., 0]                            # [t, P, K]
        dy = centre[..., 1:2] - m[..., 1]
        power = dx * (q[..., 0] * dx + q[..., 1] * dy) + q[..., 2] * dy * dy   # <= 0: the conic is positive definite
        alpha = torch.clamp(opac[index][:, None] * torch.exp(power), max=max_alpha)
        alpha = alpha.masked_fill(alpha < min_alpha, 0.0)
        transmit = torch.nn.functional.pad(torch.cumprod(1.0 - alpha, dim=-1)[..., :-1], (1, 0), value=1.0)
        return torch.bmm(alpha * transmit, feat[index])             # [t, P, C + 1]: sum w f, then sum w = alpha

    # Checkpointing (recomputing each chunk in the backward pass) only when keeping every chunk's intermediates
    # would take a lot of memory: it costs a second forward pass.
    checkpointed = needs_grad and pixels * int(per_tile.sum()) > _CHECKPOINT_ABOVE
    results, done, cursor = [], [], 0
    while cursor < len(busy):
        width_k = int(per_tile[busy[cursor]])
        step = 1
        # The chunk grows while its padded size stays in budget (tiles are sorted by length: the last is longest).
        while cursor + step < len(busy) and (step + 1) * pixels * int(per_tile[busy[cursor + step]]) <= _CHUNK_ELEMENTS:
            step += 1
        rows = busy[cursor:cursor + step]
        width_k = int(per_tile[rows[-1]])
        args = (table[rows, :width_k], centres[rows], flat_means, flat_coefs, gauss_opacity, gauss_features)
        results.append(checkpoint(composite, *args, use_reentrant=False) if checkpointed else composite(*args))
        done.append(rows)
        cursor += step
    out = out.index_copy(0, torch.cat(done), torch.cat(results))
    out = out.reshape(batch, tiles_y, tiles_x, tile, tile, channels + 1).permute(0, 1, 3, 2, 4, 5)
    out = out.reshape(batch, tiles_y * tile, tiles_x * tile, channels + 1)[:, :height, :width]
    return out[..., :channels], out[..., channels]
