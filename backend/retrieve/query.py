"""Queries and index images into embeddings: one CLIP, or the encoders of a trained TASK-former checkpoint.

Query modes and the index vectors each is compared with (`QueryEncoder.target_kind`):
- "text": the text tower vs. the shaded views;
- "photo": the image tower vs. the shaded views (a TASK-former trained with photos: its photo tower);
- "sketch": the sketch encoder (a plain CLIP's image tower) vs. the line drawings, which the index embeds with the
  same encoder. retrieval_bench (issue 20), 80 world test shapes: zero-shot R@1 0.472 against line drawings,
  0.219 against shaded views; a TASK-former trained with the lines term 0.52 against line drawings, 0.27
  against shaded views (one trained without it: 0.48 / 0.19), so TASK-former sketches go to the lines too;
- "sketch+text": TASK-former's fusion, normalise(normalise(s) + normalise(t)), vs. the shaded views.
  Measured with the domain CLIP on 64 world shapes, a sketch from an unseen camera fused with a colour-only
  text ("a red object") found its shape in the top 3 for 100% of shapes against shaded views and 75%
  against line drawings (the text embedding lives near the rendered images', not the drawings'); the sketch
  alone: 83% against line drawings, 55% against shaded views.

Every embedding is float32, unit length. An encoder names itself with `encoder_id`; a library database
records the id (and the CLIP spec) of the encoder that built it, and refuses queries from another.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from backend.errors import InvalidInputError
from backend.models.clip import ClipModel
from backend.retrieve.descriptors import POINTS_KIND, VIEW_KINDS, check_descriptor
from backend.retrieve.sketch import SketchInputConfig, sketch_from_image, sketch_from_strokes
from shared_protocol.limits import MAX_PROMPT_CHARS

MODES = ("text", "sketch", "photo", "sketch+text")
"""Query modes, named by what the query holds."""
KINDS = (*VIEW_KINDS, POINTS_KIND)
"""Index vector kinds: CLIP embeddings of the shaded views and of the line drawings, and the point encoder's
embedding of the shape's surface samples (`backend.retrieve.descriptors`)."""


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


def query_mode(text: str | None, sketch: Any, photo: Any) -> str:
    """The mode of a query from what it holds; InvalidInputError for none or an unsupported mix."""
    has = (text is not None, sketch is not None, photo is not None)
    modes = {(True, False, False): "text", (False, True, False): "sketch", (False, False, True): "photo",
             (True, True, False): "sketch+text"}
    if has not in modes:
        if not any(has):
            raise InvalidInputError("the query is empty: give a text, a sketch or a photo",
                                    hint="e.g. --text 'a red chair', --sketch drawing.png or --image photo.jpg")
        raise InvalidInputError("a query is a text, a sketch, a photo, or a sketch with a text; "
                                f"got {' + '.join(n for n, h in zip(('text', 'sketch', 'photo'), has) if h)}",
                                hint="send a photo on its own")
    return modes[has]


def check_text(text: Any) -> str:
    """A query text, stripped; InvalidInputError when it is not a string, empty, or too long."""
    if not isinstance(text, str):
        raise InvalidInputError(f"the text query must be a string, got {type(text).__name__}")
    text = text.strip()
    if not text:
        raise InvalidInputError("the text query is empty", hint="describe the shape, e.g. 'a tall wooden chair'")
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidInputError(f"the text query has {len(text)} characters, more than {MAX_PROMPT_CHARS}",
                                hint="shorten it")
    return text


class QueryEncoder:
    """Embeds queries and index images with one CLIP (zero-shot), or with a TASK-former's encoders.

    clip: the CLIP whose towers embed (a TASK-former's base CLIP when `taskformer` is given; its tokenizer,
    image size and preprocessing are used either way). taskformer: a loaded TASK-former model exposing
    `encode_text(tokens [N, L] int64)`, `encode_sketch(images)` and `encode_image(images)`, images
    [B, 3, S, S] float in [0, 1] (see `from_checkpoint`). sketch_config: how user sketches are framed.
    """

    def __init__(self, clip: ClipModel, taskformer: Any = None, checkpoint_id: str | None = None,
                 sketch_config: SketchInputConfig | None = None):
        self.clip = clip
        self.taskformer = taskformer
        self.sketch_config = sketch_config or SketchInputConfig()
        self.encoder_id = f"clip:{clip.spec}" if taskformer is None else f"taskformer:{checkpoint_id}:{clip.spec}"
        """What a database records as the encoder that built it."""
        self.checkpoint_path: str | None = None
        """The TASK-former checkpoint file it was loaded from (`from_checkpoint`): what Ray workers rebuild it from."""
        self.descriptor = "views"
        """What indexing stores per shape (`backend.retrieve.descriptors`): "views", "points" or "both"."""
        self.points = None
        """The `PointDescriptor` that embeds shapes for the points and both descriptors (None for views)."""

    def with_points(self, descriptor: str, points) -> "QueryEncoder":
        """This encoder indexing with `descriptor` and the `PointDescriptor` `points` (None for "views"), in the
        same CLIP's space. InvalidInputError for a TASK-former's encoder (its towers left the CLIP's space the
        point encoder was aligned to) or a missing point encoder."""
        check_descriptor(descriptor)
        if descriptor != "views":
            if self.taskformer is not None:
                raise InvalidInputError(f"the {descriptor} descriptor cannot be used with a TASK-former checkpoint: "
                                        "the point encoder is aligned to the plain CLIP, not the fine-tuned towers",
                                        hint="index with --descriptor views, or leave the checkpoint out")
            if points is None:
                raise InvalidInputError(f"the {descriptor} descriptor needs a point encoder",
                                        hint="pass --points-encoder PATH")
        self.descriptor, self.points = descriptor, (points if descriptor != "views" else None)
        return self

    @property
    def points_encoder_id(self) -> str:
        """The point encoder's id ("" for the views descriptor)."""
        return self.points.encoder_id if self.points is not None else ""

    @property
    def spec(self) -> str:
        """The CLIP spec (recorded in databases; `--clip`)."""
        return self.clip.spec

    @property
    def image_size(self) -> int:
        return int(self.clip.image_size)

    @property
    def device(self) -> torch.device:
        return self.clip.device

    @functools.cached_property
    def embed_dim(self) -> int:
        """Width of the embeddings (a TASK-former's projection may differ from its CLIP's)."""
        return int(self._text(["a shape"]).shape[-1])

    def target_kind(self, mode: str) -> str:
        """Which index vectors ("shaded" or "lines") a query of `mode` is compared with (module docstring)."""
        if mode not in MODES:
            raise InvalidInputError(f"unknown query mode {mode!r}", hint=f"use one of {', '.join(MODES)}")
        return "lines" if mode == "sketch" else "shaded"

    # -- towers ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def _text(self, texts: list[str]) -> torch.Tensor:
        if self.taskformer is None:
            return _unit(self.clip.encode_text(texts))
        tokens = self.clip.tokenizer(texts).to(self.device)
        return _unit(self.taskformer.encode_text(tokens))

    @torch.no_grad()
    def _image(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device)
        if self.taskformer is None:
            return _unit(self.clip.encode_image(images))
        return _unit(self.taskformer.encode_image(images))

    @torch.no_grad()
    def _photo(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device)
        if self.taskformer is None:
            return _unit(self.clip.encode_image(images))
        encode = getattr(self.taskformer, "encode_photo", self.taskformer.encode_image)
        return _unit(encode(images))

    @torch.no_grad()
    def _sketch(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device)
        if self.taskformer is None:
            return _unit(self.clip.encode_image(images))
        return _unit(self.taskformer.encode_sketch(images))

    # -- the index side --------------------------------------------------------------------------------

    def encode_views(self, shaded: torch.Tensor, lines: torch.Tensor) -> dict[str, np.ndarray]:
        """The index vectors of one shape: shaded [K, S, S, 3] and lines [K, S, S] in [0, 1] ->
        {"shaded": [K, D] float32, "lines": [K, D] float32}, unit rows. Shaded views go through the image
        encoder, line drawings through the sketch encoder (the image tower of a plain CLIP)."""
        grey = lines[..., None].expand(*lines.shape, 3)
        return {"shaded": self._image(shaded.permute(0, 3, 1, 2)).cpu().numpy().astype(np.float32),
                "lines": self._sketch(grey.permute(0, 3, 1, 2)).cpu().numpy().astype(np.float32)}

    # -- queries ---------------------------------------------------------------------------------------

    def prepare_sketch(self, sketch: Any, fill: float | None = None) -> torch.Tensor:
        """A sketch as PNG bytes, a path, an array ([H, W] or [H, W, 3|4]) or stroke polylines (a list) ->
        [S, S] float32 in [0, 1], framed (see `backend.retrieve.sketch`). fill: the ink's share of the
        frame (default `sketch_config.fill`; a search uses its database's `line_fill`)."""
        config = self.sketch_config if fill is None else replace(self.sketch_config, fill=float(fill))
        if isinstance(sketch, list):
            return sketch_from_strokes(sketch, self.image_size, config)
        return sketch_from_image(sketch, self.image_size, config)

    def encode_text(self, text: str) -> np.ndarray:
        """text -> [D] float32 unit vector; InvalidInputError for an empty or over-long text."""
        return self._text([check_text(text)])[0].cpu().numpy()

    def encode_sketch(self, sketch: Any, fill: float | None = None) -> np.ndarray:
        """A sketch (see `prepare_sketch`) -> [D] float32 unit vector; InvalidInputError for a blank one."""
        image = self.prepare_sketch(sketch, fill)
        return self._sketch(image[None, None].expand(1, 3, -1, -1))[0].cpu().numpy()

    def encode_photo(self, photo: Any) -> np.ndarray:
        """A photo (encoded bytes, a path, or [H, W, 3] float in [0, 1] / uint8) -> [D] float32 unit vector.
        The CLIP's preprocessing resizes the shorter side and centre-crops."""
        if isinstance(photo, (bytes, bytearray, memoryview, str, os.PathLike)):
            from backend.images import load_image

            photo = load_image(bytes(photo) if not isinstance(photo, (str, os.PathLike)) else photo, what="photo")
        array = torch.as_tensor(np.asarray(photo))
        if array.dtype == torch.uint8:
            array = array.float() / 255.0
        if array.ndim != 3 or array.shape[-1] != 3:
            raise InvalidInputError(f"the photo must be [H, W, 3], got shape {tuple(array.shape)}")
        return self._photo(array.float().permute(2, 0, 1)[None])[0].cpu().numpy()

    def encode_fused(self, sketch: Any, text: str, fill: float | None = None) -> np.ndarray:
        """TASK-former's fusion of a sketch and a text: normalise(normalise(s) + normalise(t))."""
        s = torch.as_tensor(self.encode_sketch(sketch, fill))
        t = torch.as_tensor(self.encode_text(text))
        return _unit(s + t).numpy()

    def encode_query(self, text: str | None = None, sketch: Any = None, photo: Any = None,
                     fill: float | None = None) -> tuple[str, np.ndarray]:
        """(mode, [D] float32 unit vector) for a text, a sketch, a photo, or a sketch with a text (fill: see
        `prepare_sketch`)."""
        mode = query_mode(text, sketch, photo)
        if mode == "text":
            return mode, self.encode_text(text)
        if mode == "sketch":
            return mode, self.encode_sketch(sketch, fill)
        if mode == "photo":
            return mode, self.encode_photo(photo)
        return mode, self.encode_fused(sketch, text, fill)

    # -- TASK-former -----------------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: torch.device | str = "cpu",
                        sketch_config: SketchInputConfig | None = None) -> "QueryEncoder":
        """A TASK-former checkpoint's encoders (`backend.retrieve.taskformer.load_taskformer`; imported here so
        plain-CLIP search never loads the training side). Its fine-tuned CLIP supplies the tokenizer, image size
        and preprocessing, and its recorded CLIP spec is this encoder's `spec`; `encoder_id` holds the file's
        content hash, so a database indexed with one checkpoint refuses another. InvalidInputError when the
        file is missing, not a TASK-former checkpoint, or one this version cannot build."""
        from backend.retrieve import taskformer  # noqa: PLC0415

        path = Path(path).expanduser()
        model = taskformer.load_taskformer(path, device)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        encoder = cls(model.clip, taskformer=model, checkpoint_id=digest, sketch_config=sketch_config)
        encoder.checkpoint_path = str(path.resolve())
        return encoder
