"""What the generator learns from beyond views (captions.json, category prompts), the flow's standardisation and
conditional mean, the grid decoder's config and legacy files, and fine-tuning from a trained generator."""

import json

import pytest
import torch

from backend.errors import InvalidInputError
from backend.generate.flow import ConditionalRealNVP, FlowConfig
from backend.generate.generator import load_generator
from backend.generate.library import CATEGORY_PROMPTS, read_library, text_embeddings
from backend.generate.occupancy import OccupancyAutoencoder, OccupancyAutoencoderConfig, stored_config
from backend.generate.train_flow import FlowTrainConfig, train_flow
from backend.generate.train_generator import train_generator
from backend.geometry.glb import export_glb
from backend.models.clip import load_clip
from backend.world.shape import make_shape

from tests.generate.test_generator import tiny_config


@pytest.fixture(scope="module")
def clip():
    torch.set_num_threads(1)
    return load_clip("tiny")


@pytest.fixture(scope="module")
def captioned(tmp_path_factory):
    """Two categories of two shapes; the chairs have captions, one of them two."""
    root = tmp_path_factory.mktemp("captioned")
    for category in ("chair", "lamp"):
        (root / category).mkdir()
        for seed in range(2):
            export_glb(make_shape(seed, category).mesh, root / category / f"{category}_{seed}.glb")
    (root / "chair" / "captions.json").write_text(json.dumps(
        {"chair_0.glb": ["a tall red chair", "a chair with armrests"], "chair_1.glb": "a short chair"}))
    return root


def test_captions_and_category_prompts_are_the_shapes_texts(captioned):
    library = read_library(captioned, 16)
    texts = dict(zip(library.relpaths, library.texts()))
    prompts = [t.format("chair") for t in CATEGORY_PROMPTS]
    assert texts["chair/chair_0.glb"] == ["a tall red chair", "a chair with armrests", *prompts]
    assert texts["chair/chair_1.glb"] == ["a short chair", *prompts]
    assert texts["lamp/lamp_0.glb"] == [t.format("lamp") for t in CATEGORY_PROMPTS]


def test_text_embeddings_are_per_shape_and_fall_back_to_views(clip):
    fallback = torch.nn.functional.normalize(torch.randn(3, 2, clip.embed_dim), dim=-1)
    out = text_embeddings([["a chair", "a red chair"], [], ["a lamp"]], clip, fallback)
    assert out.shape == (3, 2, clip.embed_dim)
    with torch.no_grad():
        chair = clip.encode_text(["a chair"]).float()[0]
    assert torch.allclose(out[0, 0], torch.nn.functional.normalize(chair, dim=0), atol=1e-5)
    assert torch.allclose(out[1], fallback[1], atol=1e-6)  # no text: its own views, never another shape's
    assert torch.equal(out[2, 0], out[2, 1])  # one text repeats


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot be read as JSON"),
    (json.dumps(["a chair"]), "must map file names"),
    (json.dumps({"chair_0.glb": 3}), "must map file names"),
])
def test_a_bad_captions_file_is_named(tmp_path, content, message):
    (tmp_path / "chair").mkdir()
    for seed in range(2):
        export_glb(make_shape(seed, "chair").mesh, tmp_path / "chair" / f"chair_{seed}.glb")
    (tmp_path / "chair" / "captions.json").write_text(content)
    with pytest.raises(InvalidInputError, match=message) as info:
        read_library(tmp_path, 16)
    assert "captions.json" in info.value.message


def test_the_flow_standardises_latents_and_its_mean_network_is_exactly_inverted():
    torch.manual_seed(0)
    flow = ConditionalRealNVP(FlowConfig(latent_dim=6, condition_dim=4, coupling_layers=3, hidden=16, mean_hidden=8))
    latents = torch.randn(64, 6) * 20 + 5
    flow.standardize(latents)
    assert torch.allclose(flow.latent_std, latents.std(0)) and torch.allclose(flow.latent_mean, latents.mean(0))
    flow.eval()
    cond = torch.randn(64, 4)
    u, log_det = flow(latents, cond)
    assert u.std() < 3 and torch.allclose(flow.inverse(u, cond), latents, atol=1e-3)
    # log-det includes the standardisation: -sum(log std), about -6 * log(20)
    assert log_det.mean() < -15
    assert flow.mean_error(latents, cond).shape == (64,)


def test_a_flow_saved_before_standardisation_loads_as_the_identity():
    flow = ConditionalRealNVP(FlowConfig(latent_dim=4, condition_dim=3, coupling_layers=2, hidden=8))
    state = {k: v for k, v in flow.state_dict().items() if not k.startswith("latent_")}
    fresh = ConditionalRealNVP(flow.config)
    fresh.latent_std.fill_(7.0)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.latent_std, torch.ones(4)) and torch.equal(fresh.latent_mean, torch.zeros(4))


def test_texts_of_the_wrong_shape_are_refused():
    with pytest.raises(InvalidInputError, match=r"texts must be \[4, T, 3\]"):
        train_flow(torch.randn(4, 4), torch.randn(4, 3), FlowConfig(latent_dim=4, condition_dim=3),
                   FlowTrainConfig(steps=1), texts=torch.randn(4, 2, 5))
    for bad in ({"text_fraction": 1.5}, {"condition_noise": -0.1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            FlowTrainConfig(**bad)


def test_grid_decoder_config_and_legacy_files():
    config = OccupancyAutoencoderConfig(latent_dim=8, voxel_resolution=16, encoder_channels=4, grid_resolution=16,
                                        grid_channels=4, decoder_hidden=8)
    model = OccupancyAutoencoder(config)
    logits = model(torch.zeros(2, 16, 16, 16), torch.rand(2, 50, 3) * 2 - 1)
    assert logits.shape == (2, 50)
    assert model.decoder.feature_grid(torch.zeros(1, 8)).shape == (1, 4, 16, 16, 16)
    legacy = stored_config({"latent_dim": 8, "voxel_resolution": 16, "encoder_channels": 4, "decoder_hidden": 8,
                            "decoder_blocks": 2, "fourier_frequencies": 0})
    assert (legacy.encoder, legacy.decoder) == ("dense", "global")
    for bad, message in (({"decoder": "mlp"}, "decoder must be one of grid, global"),
                         ({"grid_resolution": 12}, "grid_resolution must be a power of two")):
        with pytest.raises(ValueError, match=message):
            OccupancyAutoencoderConfig(**bad)


def test_fine_tuning_starts_from_the_given_generator(captioned, clip, tmp_path):
    base = tmp_path / "base.pt"
    train_generator(captioned, base, clip, tiny_config(ae_steps=30, flow_steps=30))
    start = load_generator(base)
    other = tiny_config(ae_steps=1, flow_steps=1)
    other.autoencoder.latent_dim = 24  # ignored: fine-tuning keeps the init's model shapes
    tuned_path = tmp_path / "tuned.pt"
    report = train_generator(captioned, tuned_path, clip, other, init=start)
    tuned = load_generator(tuned_path)
    assert tuned.autoencoder.config == start.autoencoder.config and tuned.train["init"] == str(base)
    # one step from the init stays near it; a fresh model would be far
    drift = max((a - b).abs().max().item() for a, b in zip(tuned.autoencoder.parameters(),
                                                           start.autoencoder.parameters()))
    assert drift < 0.05 and report.shapes == 4
    with pytest.raises(InvalidInputError, match="trained with the CLIP"):
        train_generator(captioned, tmp_path / "x.pt", load_clip("tiny-rn"), other, init=start)
