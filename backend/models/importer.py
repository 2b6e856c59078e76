"""`import_file`: register a local weights file under a catalogue name, after checking that it loads.

Apart from `store.py` because a CLIP file is checked by building its architecture (`clip.py`), and `clip.py`
itself finds weights through `store.py`: this module sits above both, so neither imports the other back.
"""

from __future__ import annotations

import os
import pickle
import shutil
import struct
from pathlib import Path

import torch

from backend.errors import InvalidInputError
from backend.models.catalogue import lookup
from backend.models.clip import verify_clip_weights
from backend.models.store import CLIP_SUFFIXES, _reason, store_candidates, weights_dir


def import_file(name: str, path: str | os.PathLike, link: bool = False) -> Path:
    """Checks that `path` holds weights `name`, then copies (or symlinks, `link=True`) it into the weights dir.

    CLIP files must load into the named open_clip architecture; SAM files must be a torch checkpoint dict
    with segment-anything keys. Returns the stored file's path, which `find_weights(name)` now returns.
    """
    info = lookup(name)
    src = Path(path).expanduser()
    if not src.is_file():
        raise InvalidInputError(f"cannot import {info.name}: {src} is not a file",
                                hint="give the path of the weights file")
    if info.kind == "clip":
        verify_clip_weights(info, src)
        suffix = src.suffix.lower() if src.suffix.lower() in CLIP_SUFFIXES else ".pt"
        dest = weights_dir() / f"{info.filename}{suffix}"
    else:
        verify_sam_checkpoint(src)
        dest = weights_dir() / info.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Exactly one stored copy per name, so find_weights is unambiguous.
    for old in store_candidates(info):
        if old != dest and (old.is_file() or old.is_symlink()):
            old.unlink()
    if dest.exists() and dest.resolve() == src.resolve():
        return dest
    part = dest.with_name(dest.name + ".part")
    part.unlink(missing_ok=True)
    try:
        if link:
            part.symlink_to(src.resolve())
        else:
            shutil.copyfile(src, part)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return dest


def verify_sam_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Loads `path` as a segment-anything checkpoint (memory-mapped where possible) and returns its state dict.

    Raises InvalidInputError when the file is not a torch checkpoint dict with SAM's `image_encoder.` keys.
    """
    hint = "give the .pth file from the segment-anything release"
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            # Files in torch's legacy (non-zip) format cannot be memory-mapped.
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError, struct.error) as exc:
        raise InvalidInputError(f"{path} is not a readable torch checkpoint: {_reason(exc)}", hint=hint) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InvalidInputError(f"{path} is not a state dict (a dict of tensors)", hint=hint)
    if not any(str(key).startswith("image_encoder.") for key in state):
        raise InvalidInputError(f"{path} has no `image_encoder.` weights, so it is not a SAM checkpoint",
                                hint="give sam_vit_b_01ec64.pth, sam_vit_l_0b3195.pth or sam_vit_h_4b8939.pth")
    return state
