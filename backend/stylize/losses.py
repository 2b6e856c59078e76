"""CLIP cosine losses between rendered (augmented) views and a target embedding (text or image).

Shared by Text2Mesh (target: the prompt) and the texture restyler (target: style images). Embeddings
may be raw or unit length: every function normalises where a cosine needs it.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from backend.errors import InvalidInputError
from shared_protocol.limits import MAX_PROMPT_CHARS

Average = Literal["view", "image"]
"""How a batch of view embeddings meets the target: "view" compares the mean embedding of the views
(Text2Mesh's `clipavg=view`: one consistent object across views); "image" averages per-image cosines."""


STYLE_HINT = "describe the style in words, e.g. 'a chair made of red brick'"


def check_prompt(prompt: str, context_length: int | None = None, tokenizer=None, *, hint: str = STYLE_HINT) -> str:
    """A prompt stripped of surrounding space; InvalidInputError when it is not text, empty or too long.

    context_length and tokenizer (open_clip's `SimpleTokenizer`): when given, a prompt with more tokens
    than the text tower reads (context_length - 2, for the start and end tokens) is refused rather
    than silently truncated. hint: the fix shown for a missing or empty prompt (each job says what to write).
    """
    if not isinstance(prompt, str):
        raise InvalidInputError(f"the prompt must be a string, got {type(prompt).__name__}", hint=hint)
    text = prompt.strip()
    if not text:
        raise InvalidInputError("the prompt is empty", hint=hint)
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidInputError(f"the prompt is {len(text)} characters long, more than {MAX_PROMPT_CHARS}",
                                hint="shorten the prompt to one sentence")
    if context_length is not None and tokenizer is not None:
        tokens = len(tokenizer.encode(text))
        if tokens > context_length - 2:
            raise InvalidInputError(
                f"the prompt is {tokens} tokens long; this CLIP reads at most {context_length - 2}",
                hint="shorten the prompt (CLIP would ignore the rest)")
    return text


def encode_prompts(clip, prompts: Sequence[str]) -> torch.Tensor:
    """prompts: N checked strings -> [N, D] float32 raw (unnormalised) CLIP text embeddings, no gradient."""
    return clip.encode_text(list(prompts), normalize=False).float()


def cosine_loss(embeddings: torch.Tensor, target: torch.Tensor, average: Average = "view") -> torch.Tensor:
    """Negative cosine similarity of groups of view embeddings to a target.

    embeddings: [G, B, D] (G groups, e.g. augmentation draws, of B views) or [B, D] (one group);
    target: [T, D] or [D] (T > 1 targets are averaged first). Returns [G] (or a 0-d tensor for one
    group), each in [-1, 1]; lower is closer. Differentiable with respect to `embeddings`.
    """
    single = embeddings.dim() == 2
    groups = embeddings.unsqueeze(0) if single else embeddings
    if groups.dim() != 3:
        raise ValueError(f"embeddings must be [G, B, D] or [B, D], got shape {tuple(embeddings.shape)}")
    goal = target.reshape(-1, target.shape[-1]).mean(dim=0)
    if average == "view":
        loss = -F.cosine_similarity(groups.mean(dim=1), goal.expand(groups.shape[0], -1), dim=-1)
    elif average == "image":
        loss = -F.cosine_similarity(groups, goal.expand_as(groups), dim=-1).mean(dim=1)
    else:
        raise ValueError(f"average must be 'view' or 'image', got {average!r}")
    return loss[0] if single else loss


def clip_scores(image_embeddings: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each image to the (mean) target: image_embeddings [B, D], target [T, D] -> [B]."""
    goal = target.reshape(-1, target.shape[-1]).mean(dim=0)
    return F.cosine_similarity(image_embeddings, goal.expand_as(image_embeddings), dim=-1)
