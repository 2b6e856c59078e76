"""TASK-former's losses: the embedding loss (symmetric InfoNCE or the hard-negative loss), classification and
caption cross-entropies, and their weighted total (100 : 10 : 1, Sangkloy et al. 2022, as replicated in the
seed paper).

Every contrastive loss here takes two batches of unit vectors whose row i is a matching pair (the image of a
shape and the query made from the same shape's sketch and caption): the diagonal of the similarity matrix
holds the positives, every other entry of a row (or column) a negative. Batches therefore hold distinct
shapes (the trainer samples them that way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"contrastive losses take two [B, D] batches of the same shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if a.shape[0] < 2:
        raise ValueError("a contrastive loss needs a batch of at least 2 pairs (one positive, one negative)")


def info_nce(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """CLIP's symmetric InfoNCE (Oord et al. 2018; Radford et al. 2021).

    a, b: [B, D] float, unit rows, row i of `a` matches row i of `b`; logit_scale: 1 / temperature.
    Returns the scalar mean of the a->b and b->a cross-entropies over the rows of `logit_scale * a @ b.T`.
    """
    _check_pair(a, b)
    logits = logit_scale * a @ b.T
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def _hard_negative_rows(logits: torch.Tensor, beta: float, tau_plus: float, logit_scale: torch.Tensor) -> torch.Tensor:
    """Per-row hard-negative loss with anchors on the rows, positives on the diagonal. Log-space: logits up to
    100 would overflow exp() in float32, so every exponential is taken relative to the row maximum m."""
    n_rows = logits.shape[0]
    n_neg = n_rows - 1
    eye = torch.eye(n_rows, dtype=torch.bool, device=logits.device)
    pos_logit = logits.diagonal()
    neg_logits = logits.masked_fill(eye, float("-inf"))
    m = logits.max(dim=1).values.detach()
    pos = torch.exp(pos_logit - m)
    neg = torch.exp(neg_logits - m[:, None])  # exactly 0 on the diagonal
    # Importance weights of q_beta: w_j = N exp(beta l_j) / sum_k exp(beta l_k) over the negatives, so that
    # sum_j w_j neg_j = (sum_j imp_j neg_j) / mean_j imp_j with imp_j = neg_j^beta, as in the reference code.
    weights = n_neg * torch.softmax((beta * logits).masked_fill(eye, float("-inf")), dim=1)
    reweighted = (weights * neg).sum(dim=1)
    ng = (reweighted - n_neg * tau_plus * pos) / (1.0 - tau_plus)
    # Clamp at its theoretical minimum N e^{-1/t} (every negative at cosine -1), shifted by m like the rest.
    floor = n_neg * torch.exp(-logit_scale - m)
    ng = torch.maximum(ng, floor)
    return torch.log(pos + ng) - (pos_logit - m)


def hard_negative_loss(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float, beta: float = 1.0,
                       tau_plus: float = 0.1) -> torch.Tensor:
    """The hard-negative contrastive loss of Robinson, Chuang, Sra and Jegelka, "Contrastive Learning with Hard
    Negative Samples" (ICLR 2021), eq. 5 and their reference code, made symmetric across the two modalities as
    in the multi-modal HCL of Kühn et al. (the seed paper on image-based shape retrieval).

    For an anchor x with positive x+ and N negatives x-_j, with l = logit_scale * cosine (= s / t):

        pos  = exp(l(x, x+))                 neg_j = exp(l(x, x-_j))
        w_j  = N exp(beta l(x, x-_j)) / sum_k exp(beta l(x, x-_k))     (importance weights of q_beta)
        Ng   = max( (sum_j w_j neg_j - N tau_plus pos) / (1 - tau_plus),  N exp(-logit_scale) )
        loss = -log( pos / (pos + Ng) )

    beta (>= 0) concentrates the negatives' weight on the hardest ones (those most similar to the anchor);
    tau_plus in [0, 1) is the class prior: the expected share of the batch that are false negatives, whose
    estimated contribution (N tau_plus pos) is removed (the debiasing of Chuang et al. 2020). With beta = 0
    the weights are all 1: tau_plus > 0 gives the debiased contrastive loss, and beta = tau_plus = 0 gives
    exactly `info_nce` (the paper's remark that the loss reduces to the standard objective).

    a, b: [B, D] float unit rows, row i of `a` matches row i of `b`. Returns the scalar mean over the a->b
    and b->a directions.
    """
    _check_pair(a, b)
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if not 0.0 <= tau_plus < 1.0:
        raise ValueError(f"tau_plus must be in [0, 1), got {tau_plus}")
    scale = torch.as_tensor(logit_scale, dtype=a.dtype, device=a.device)
    logits = scale * a @ b.T
    rows = _hard_negative_rows(logits, beta, tau_plus, scale)
    cols = _hard_negative_rows(logits.T, beta, tau_plus, scale)
    return 0.5 * (rows.mean() + cols.mean())


def classification_loss(logits: list[torch.Tensor] | tuple[torch.Tensor, ...], labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the class head over the embeddings it saw (image, sketch, text).

    logits: [B, C] float per embedding; labels: [B] int64 class indices.
    """
    if not logits:
        raise ValueError("classification_loss needs at least one [B, C] logits tensor")
    return torch.stack([F.cross_entropy(x, labels) for x in logits]).mean()


def caption_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Next-token cross-entropy of the caption decoder.

    logits: [B, L, V] float; targets: [B, L] int64 decoder-vocabulary indices, `ignore_index` where there is
    no token (after the end of the caption).
    """
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=ignore_index)


@dataclass(frozen=True)
class LossWeights:
    """How the three TASK-former losses add up (the paper: 100 : 10 : 1)."""

    embedding: float = 100.0
    """Weight of the embedding loss (image vs sketch + text query)."""
    classification: float = 10.0
    """Weight of the classification loss (class head on the image, sketch and text embeddings)."""
    caption: float = 1.0
    """Weight of the caption loss (decoder conditioned on the query embedding)."""

    def __post_init__(self) -> None:
        for name in ("embedding", "classification", "caption"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"LossWeights.{name} must be a finite number >= 0, got {value!r}")
        if self.embedding <= 0:
            raise ValueError("LossWeights.embedding must be > 0: retrieval is learnt by the embedding loss")


def total_loss(embedding: torch.Tensor, classification: torch.Tensor, caption: torch.Tensor,
               weights: LossWeights = LossWeights()) -> torch.Tensor:
    """weights.embedding * embedding + weights.classification * classification + weights.caption * caption."""
    return weights.embedding * embedding + weights.classification * classification + weights.caption * caption
