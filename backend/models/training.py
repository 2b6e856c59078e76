"""What the models' training code shares: a scoped torch thread count and image augmentation.

Used by the domain CLIP's trainer and by TASK-former training and indexing; nothing here imports the world.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F


@contextlib.contextmanager
def torch_threads(count: int):
    """Runs the block with `count` torch CPU threads, then restores the previous count.

    World renders at 64 px are small kernels: on a shared 2-core machine two OpenMP threads rendered 6-20x
    slower than one (measured), so rendering here always uses one thread per process.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def augment(images: torch.Tensor, generator: torch.Generator, scale: tuple[float, float], flip: bool) -> torch.Tensor:
    """Random square crops (zoom in or out, shifted) and mirroring; colours untouched.

    images: [B, 3, H, W] float in [0, 1] over a white background -> same shape; outside the image is white.
    """
    batch = images.shape[0]
    side = torch.empty(batch).uniform_(scale[0], scale[1], generator=generator)
    room = (1 - side).abs()
    shift = (torch.rand(batch, 2, generator=generator) * 2 - 1) * room[:, None]
    mirror = torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(batch)
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = side * mirror
    theta[:, 1, 1] = side
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # Sample 1 - image with zero padding: the area outside the picture becomes white paper.
    return 1 - F.grid_sample(1 - images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
