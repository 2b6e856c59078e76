"""Shared by the segmentation, CLI and server tests: a tiny random SAM checkpoint, its generator settings, a photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.segment.sam import TINY_SAM, SamConfig, save_sam_checkpoint


def write_tiny_sam(path: Path) -> Path:
    """TINY_SAM (random, seed 0: 64-px input, 2 blocks of width 32) saved with save_sam_checkpoint."""
    return save_sam_checkpoint(TINY_SAM.build(seed=0), TINY_SAM, path, name="tiny")


def tiny_sam_config(path, **overrides) -> SamConfig:
    """The automatic generator's thresholds lowered so a random SAM proposes masks (8x8 prompts: milliseconds)."""
    values = dict(checkpoint=None if path is None else str(path), points_per_side=8, pred_iou_thresh=0.0,
                  stability_score_thresh=0.0)
    values.update(overrides)
    return SamConfig(**values)


def disc_photo(height: int = 90, width: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """A red disc on a two-tone blue/green background: [H, W, 3] float32 in [0, 1] and the disc's mask."""
    yy, xx = np.mgrid[0:height, 0:width]
    disc = (yy - height * 0.5) ** 2 + (xx - width * 0.6) ** 2 < (min(height, width) * 0.28) ** 2
    image = np.zeros((height, width, 3), np.float32)
    image[:] = (0.1, 0.6, 0.2)
    image[: height // 3] = (0.2, 0.3, 0.8)
    image[disc] = (0.9, 0.1, 0.1)
    return image, disc
