"""The conditional latent flow: it is an exact bijection in eval mode, its log-det is the Jacobian's, it
learns which latent cluster goes with which condition, and checkpoints load weights-only."""

import time

import pytest
import torch

from backend.errors import InvalidInputError, JobCancelled
from backend.generate.flow import ConditionalRealNVP, FlowConfig
from backend.generate.train_flow import FlowTrainConfig, load_flow, train_flow
from backend.progress import CancelToken

D, C = 8, 16
TINY = FlowConfig(latent_dim=D, condition_dim=C, coupling_layers=4, hidden=64)
"""The production flow shrunk (latent 128 -> 8, CLIP 512 -> 16, 5 -> 4 couplings, width 1024 -> 64)."""
CLUSTER_STD = 0.3


def scrambled_flow(config: FlowConfig, dtype=torch.float32, seed: int = 0) -> ConditionalRealNVP:
    """A flow far from the identity: random weights (the couplings' last layers start at zero) and
    batch-norm running statistics gathered from shifted, scaled data."""
    torch.manual_seed(seed)
    flow = ConditionalRealNVP(config).to(dtype)
    with torch.no_grad():
        for p in flow.parameters():
            p.normal_(0.0, 0.3)
        flow.train()
        for _ in range(5):
            flow(torch.randn(64, config.latent_dim, dtype=dtype) * 2.0 + 1.0,
                 torch.randn(64, config.condition_dim, dtype=dtype))
    return flow.eval()


@pytest.fixture(scope="module")
def clusters():
    """Two conditions -> two latent clusters at radius 3 (std 0.3); three noisy views per shape."""
    g = torch.Generator().manual_seed(0)
    n, views = 1024, 3
    conds = torch.randn(2, C, generator=g)
    means = torch.randn(2, D, generator=g)
    means = means / means.norm(dim=1, keepdim=True) * 3.0
    label = torch.arange(n) % 2
    latents = means[label] + CLUSTER_STD * torch.randn(n, D, generator=g)
    views_c = conds[label].unsqueeze(1) + 0.1 * torch.randn(n, views, C, generator=g)
    return latents, views_c, conds, means


@pytest.fixture(scope="module")
def trained(clusters, tmp_path_factory):
    torch.set_num_threads(1)
    latents, views_c, _, _ = clusters
    path = tmp_path_factory.mktemp("flow") / "flow.pt"
    calls = []
    start = time.perf_counter()
    flow, losses = train_flow(latents, views_c, TINY, FlowTrainConfig(steps=300, batch_size=64, learning_rate=3e-3),
                              checkpoint_path=path, progress=lambda s, t, **m: calls.append((s, t, m)))
    print(f"\nflow: 300 steps in {time.perf_counter() - start:.1f} s")
    return flow, losses, path, calls


def test_eval_mode_round_trips():
    torch.set_num_threads(1)
    flow = scrambled_flow(TINY)
    z = torch.randn(32, D) * 2.0 + 1.0
    cond = torch.randn(32, C)
    u, _ = flow(z, cond)
    assert (u - z).abs().max() > 0.1  # not the identity
    torch.testing.assert_close(flow.inverse(u, cond), z, atol=1e-4, rtol=1e-4)

    # sample -> forward gives back the Gaussian draws scaled by the temperature.
    samples = flow.sample(cond[:3], 5, torch.Generator().manual_seed(7), temperature=0.8)
    assert samples.shape == (3, 5, D)
    draws = torch.randn(15, D, generator=torch.Generator().manual_seed(7)) * 0.8
    u_back, _ = flow(samples.reshape(15, D), cond[:3].repeat_interleave(5, dim=0))
    torch.testing.assert_close(u_back, draws, atol=1e-4, rtol=1e-4)
    assert flow.sample(cond[0], 4).shape == (4, D)
    # The same generator seed gives the same latents.
    torch.testing.assert_close(flow.sample(cond[0], 4, torch.Generator().manual_seed(1)),
                               flow.sample(cond[0], 4, torch.Generator().manual_seed(1)))


def test_log_det_matches_autograd_jacobian():
    config = FlowConfig(latent_dim=4, condition_dim=3, coupling_layers=3, hidden=8)
    flow = scrambled_flow(config, torch.float64, seed=1)
    z = torch.randn(5, 4, dtype=torch.float64)
    cond = torch.randn(5, 3, dtype=torch.float64)
    _, log_det = flow(z, cond)
    for i in range(5):
        jac = torch.autograd.functional.jacobian(lambda x: flow(x[None], cond[i:i + 1])[0][0], z[i])
        assert torch.isclose(log_det[i], torch.linalg.slogdet(jac)[1], atol=1e-10)
    assert log_det.abs().max() > 0.1  # a volume change worth checking
    # log_prob = standard-normal density of u plus the log-det.
    u, _ = flow(z, cond)
    base = torch.distributions.Normal(0.0, 1.0).log_prob(u).sum(dim=1)
    torch.testing.assert_close(flow.log_prob(z, cond), base + log_det)


def test_training_learns_the_conditional_clusters(trained, clusters):
    flow, losses, _, calls = trained
    latents, _, conds, means = clusters
    assert len(losses) == 300 and calls[-1][:2] == (300, 300) and "loss" in calls[-1][2]
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    # Held-out NLL per dimension against the true conditional density's entropy.
    g = torch.Generator().manual_seed(3)
    label = torch.arange(1000) % 2
    fresh = means[label] + CLUSTER_STD * torch.randn(1000, D, generator=g)
    with torch.no_grad():
        held_out = float((-flow.log_prob(fresh, conds[label]) / D).mean())
    entropy = 0.5 * float(torch.log(torch.tensor(2 * torch.pi * torch.e * CLUSTER_STD**2)))
    print(f"NLL/dim first 20 steps {first:.3f}, last 20 {last:.3f}; "
          f"held-out {held_out:.3f} (true entropy {entropy:.3f})")
    assert last < first - 0.5
    assert held_out < entropy + 0.1
    separation = float((means[0] - means[1]).norm())
    for k in range(2):
        samples = flow.sample(conds[k], 200, torch.Generator().manual_seed(k))
        own = float((samples.mean(dim=0) - means[k]).norm())
        other = float((samples.mean(dim=0) - means[1 - k]).norm())
        spread = float((samples - means[k]).norm(dim=1).mean())
        print(f"condition {k}: sample mean {own:.3f} from its cluster, {other:.3f} from the other; "
              f"clusters {separation:.3f} apart; "
              f"mean sample distance {spread:.3f} (cluster's own {CLUSTER_STD * D**0.5:.3f})")
        assert own < 0.3 and other > separation - 0.3
        assert 0.5 * CLUSTER_STD * D**0.5 < spread < 1.5 * CLUSTER_STD * D**0.5


def test_checkpoint_round_trip(trained, clusters, tmp_path):
    flow, losses, path, _ = trained
    latents, _, conds, _ = clusters
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["kind"] == "atelier.latent_flow" and state["step"] == 300 and len(state["losses"]) == 300
    loaded = load_flow(path)
    assert not loaded.training and loaded.config == flow.config
    with torch.no_grad():
        torch.testing.assert_close(loaded.log_prob(latents[:16], conds[torch.arange(16) % 2]),
                                   flow.log_prob(latents[:16], conds[torch.arange(16) % 2]))
    torch.testing.assert_close(loaded.sample(conds[0], 3, torch.Generator().manual_seed(2)),
                               flow.sample(conds[0], 3, torch.Generator().manual_seed(2)))
    with pytest.raises(InvalidInputError, match="no flow checkpoint"):
        load_flow(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"kind": "atelier.occupancy_autoencoder"}, other)
    with pytest.raises(InvalidInputError, match="not a latent flow checkpoint"):
        load_flow(other)


def test_seeded_training_with_single_view_conditions(clusters):
    torch.set_num_threads(1)
    latents, views_c, _, _ = clusters
    config = FlowTrainConfig(steps=3, batch_size=16, latent_noise=0.05)
    _, a = train_flow(latents[:64], views_c[:64, 0], TINY, config)  # [N, C] conditions
    _, b = train_flow(latents[:64], views_c[:64, 0], TINY, config)
    assert a == b


def test_bad_inputs_and_cancel(clusters):
    latents, views_c, _, _ = clusters
    flow = ConditionalRealNVP(TINY).eval()
    with pytest.raises(ValueError, match=r"z must be \[B, 8\]"):
        flow(torch.zeros(4, 7), torch.zeros(4, C))
    with pytest.raises(ValueError, match=r"cond must be \[B, 16\]"):
        flow(torch.zeros(4, D), torch.zeros(4, 15))
    with pytest.raises(ValueError, match="one condition per latent"):
        flow.log_prob(torch.zeros(4, D), torch.zeros(3, C))
    with pytest.raises(ValueError, match=r"cond must be \[B, 16\]"):
        flow.sample(torch.zeros(12), 2)
    with pytest.raises(ValueError, match="n must be >= 1"):
        flow.sample(torch.zeros(C), 0)
    with pytest.raises(ValueError, match="flow.eval"):
        flow.train()(torch.zeros(1, D), torch.zeros(1, C))
    with pytest.raises(ValueError, match="latent_dim must be >= 2"):
        FlowConfig(latent_dim=1)
    with pytest.raises(InvalidInputError, match=r"latents must be \[N, 8\]"):
        train_flow(latents[:, :5], views_c, TINY, FlowTrainConfig(steps=1))
    with pytest.raises(InvalidInputError, match="conditions must be"):
        train_flow(latents, views_c[..., :10], TINY, FlowTrainConfig(steps=1))
    with pytest.raises(InvalidInputError, match="conditions must be"):
        train_flow(latents, views_c[:10], TINY, FlowTrainConfig(steps=1))
    with pytest.raises(InvalidInputError, match="at least 2"):
        train_flow(latents[:1], views_c[:1], TINY, FlowTrainConfig(steps=1))
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        train_flow(latents, views_c, TINY, FlowTrainConfig(steps=5), cancel=token)
