"""TASK-former losses on hand-made tensors: known values, the hard-negative loss's limits, finite gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from taskformer_helpers import one_thread  # noqa: F401  (fixture)

from backend.retrieve.losses import (LossWeights, caption_loss, classification_loss, hard_negative_loss, info_nce,
                                     total_loss)

pytestmark = pytest.mark.usefixtures("one_thread")


def _unit(rows: int, dim: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    return F.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype), dim=-1)


def _reference_hcl(a: torch.Tensor, b: torch.Tensor, scale: float, beta: float, tau_plus: float) -> torch.Tensor:
    """Robinson et al.'s reference code (github.com/joshr17/HCL, `criterion`), direct exponentials, one direction
    per call, with the cross-modal batch: anchors a_i, positive b_i, negatives b_j (j != i)."""
    n = a.shape[0] - 1
    sim = torch.exp(scale * a @ b.T)
    pos = sim.diagonal()
    neg = sim[~torch.eye(a.shape[0], dtype=torch.bool)].view(a.shape[0], n)
    imp = (beta * neg.log()).exp()
    reweight_neg = (imp * neg).sum(dim=-1) / imp.mean(dim=-1)
    ng = (-tau_plus * n * pos + reweight_neg) / (1 - tau_plus)
    ng = torch.clamp(ng, min=n * math.exp(-scale))
    return (-torch.log(pos / (pos + ng))).mean()


def test_info_nce_known_value():
    # Two orthogonal pairs at scale 1: each row's logits are (1, 0), so the loss is log(1 + e^-1).
    eye = torch.eye(2)
    assert info_nce(eye, eye, 1.0).item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    # Perfectly separated pairs at a large scale: the loss vanishes; swapped pairs: about the scale
    # (each row's right logit is 0 and a wrong one is the scale).
    assert info_nce(eye, eye, 50.0).item() < 1e-6
    assert info_nce(eye, eye.flip(0), 50.0).item() == pytest.approx(50.0, rel=1e-4)


def test_info_nce_is_symmetric():
    a, b = _unit(6, 8, 0), _unit(6, 8, 1)
    assert info_nce(a, b, 10.0).item() == pytest.approx(info_nce(b, a, 10.0).item(), rel=1e-12)


@pytest.mark.parametrize("beta, tau_plus", [(0.0, 0.0), (0.5, 0.0), (1.0, 0.1), (2.0, 0.3), (0.0, 0.2)])
def test_hard_negative_matches_the_reference_code(beta, tau_plus):
    a, b = _unit(8, 16, 2), _unit(8, 16, 3)
    scale = 5.0
    expected = 0.5 * (_reference_hcl(a, b, scale, beta, tau_plus) + _reference_hcl(b, a, scale, beta, tau_plus))
    assert hard_negative_loss(a, b, scale, beta, tau_plus).item() == pytest.approx(expected.item(), rel=1e-9)


def test_hard_negative_at_beta_zero_reduces_to_info_nce():
    """The paper: beta = 0 (and no debiasing) is the standard contrastive objective."""
    a, b = _unit(10, 16, 4), _unit(10, 16, 5)
    for scale in (1.0, 14.3, 100.0):
        assert hard_negative_loss(a, b, scale, beta=0.0, tau_plus=0.0).item() == \
            pytest.approx(info_nce(a, b, scale).item(), rel=1e-9)


def test_hard_negative_weights_the_hardest_negatives():
    """With beta > 0 the loss grows (negatives near the anchor count more), and grows with beta."""
    a, b = _unit(12, 8, 6), _unit(12, 8, 7)
    losses = [hard_negative_loss(a, b, 10.0, beta=beta, tau_plus=0.0).item() for beta in (0.0, 0.5, 1.0, 2.0)]
    assert losses == sorted(losses) and losses[-1] > losses[0] + 0.1


def test_hard_negative_is_stable_and_differentiable_at_clip_scale():
    # logit_scale 100 makes exp() overflow float32 if taken directly; the loss works in log space.
    a = _unit(16, 32, 8, torch.float32).requires_grad_(True)
    b = _unit(16, 32, 9, torch.float32).requires_grad_(True)
    scale = torch.tensor(100.0, requires_grad=True)
    loss = hard_negative_loss(a, b, scale, beta=1.0, tau_plus=0.1)
    loss.backward()
    assert torch.isfinite(loss)
    for grad in (a.grad, b.grad, scale.grad):
        assert grad is not None and torch.isfinite(grad).all()
    assert a.grad.abs().sum() > 0
    # Identical rows (every similarity 1): finite too, the clamp at N e^{-1/t} keeps Ng positive.
    same = torch.ones(4, 8) / math.sqrt(8)
    assert torch.isfinite(hard_negative_loss(same, same, 100.0, beta=1.0, tau_plus=0.5))


@pytest.mark.parametrize("kwargs, message", [({"beta": -1.0}, "beta"), ({"tau_plus": 1.0}, "tau_plus"),
                                             ({"tau_plus": -0.1}, "tau_plus")])
def test_hard_negative_rejects_bad_parameters(kwargs, message):
    a = _unit(4, 8, 0)
    with pytest.raises(ValueError, match=message):
        hard_negative_loss(a, a, 10.0, **kwargs)


def test_contrastive_losses_reject_bad_batches():
    with pytest.raises(ValueError, match="same shape"):
        info_nce(_unit(4, 8, 0), _unit(3, 8, 0), 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        hard_negative_loss(_unit(1, 8, 0), _unit(1, 8, 1), 1.0)


def test_classification_and_caption_losses():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    labels = torch.tensor([0, 2])
    expected = -math.log(math.exp(2) / (math.exp(2) + 2))
    assert classification_loss([logits, logits, logits], labels).item() == pytest.approx(expected, rel=1e-6)
    uniform = torch.zeros(2, 3, 5)  # [B, L, V]
    targets = torch.tensor([[1, 2, -100], [4, -100, -100]])
    assert caption_loss(uniform, targets).item() == pytest.approx(math.log(5), rel=1e-6)  # padding ignored


def test_total_loss_weights_are_100_10_1():
    weights = LossWeights()
    assert (weights.embedding, weights.classification, weights.caption) == (100.0, 10.0, 1.0)
    total = total_loss(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0))
    assert total.item() == pytest.approx(100 + 20 + 3)
    with pytest.raises(ValueError, match="embedding"):
        LossWeights(embedding=0.0)
    with pytest.raises(ValueError, match="caption"):
        LossWeights(caption=float("nan"))
