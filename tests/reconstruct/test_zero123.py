"""Zero123 guidance: the real loading path on a tiny random checkpoint in the diffusers layout."""

import time

import pytest
import torch

from backend.errors import DependencyMissingError, WeightsMissingError
from backend.reconstruct.guidance import GuidanceConfig, ZERO123_PARTS, make_guidance, zero123_model_check
from backend.reconstruct.reference_view import ReferenceView
from backend.render.camera import orbit_cameras

# diffusers and transformers are in the test extra: a missing one fails here, never a skip.
from backend.reconstruct.zero123 import (
    CLIPCameraProjection, Zero123Config, Zero123Guidance, relative_camera)


def tiny_checkpoint(folder):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    UNet2DConditionModel(sample_size=16, in_channels=8, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
                         down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                         up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                         attention_head_dim=4, norm_num_groups=4).save_pretrained(folder / "unet")
    AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8), layers_per_block=1,
                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  norm_num_groups=4).save_pretrained(folder / "vae")
    CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                   num_attention_heads=2, image_size=32, patch_size=8,
                                                   projection_dim=16)).save_pretrained(folder / "image_encoder")
    CLIPCameraProjection(embedding_dim=16, additional_embeddings=4).save_pretrained(folder / "clip_camera_projection")
    DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                  beta_end=0.012).save_pretrained(folder / "scheduler")
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("zero123"))


def reference_view(size=32):
    image = torch.ones(size, size, 3)
    image[8:24, 8:24] = torch.tensor([0.8, 0.2, 0.1])
    return ReferenceView(image=image, mask=torch.zeros(size, size), camera=orbit_cameras([30.0], [10.0], 3.0),
                         azimuth=30.0, elevation=10.0)


def test_relative_camera_known_poses():
    ref = orbit_cameras([30.0], [10.0], 3.0).eye
    novel = orbit_cameras([30.0, 120.0, 30.0, 210.0], [10.0, 10.0, 40.0, 10.0], [3.0, 3.0, 3.0, 4.0]).eye
    pose = relative_camera(novel, ref[0])
    assert torch.allclose(pose[0], torch.tensor([0.0, 0.0, 1.0, 0.0]), atol=1e-5)
    assert torch.allclose(pose[1], torch.tensor([0.0, 1.0, 0.0, 0.0]), atol=1e-5)  # +90 azimuth
    assert pose[2, 0].item() == pytest.approx(-torch.pi / 6, abs=1e-5)  # 30 deg higher: polar decreases
    assert pose[2, 1:3].tolist() == pytest.approx([0.0, 1.0], abs=1e-5)
    assert pose[3].tolist() == pytest.approx([0.0, 0.0, -1.0, 1.0], abs=1e-5)  # opposite side, farther


def test_loss_is_finite_with_gradients(checkpoint):
    torch.set_num_threads(1)
    reference = reference_view()
    guidance = Zero123Guidance(checkpoint, reference.image, "cpu", Zero123Config(size=32))
    assert guidance.name == "zero123" and guidance.dtype == torch.float32
    assert guidance.embedding.shape == (1, 1, 16) and guidance.reference_latents.shape == (1, 4, 16, 16)
    images = torch.rand(2, 32, 32, 3, requires_grad=True)
    cameras = orbit_cameras([100.0, 250.0], [0.0, 20.0], 3.0)
    start = time.perf_counter()
    loss = guidance.loss(images, cameras=cameras, reference=reference)
    loss.backward()
    print(f"zero123 tiny loss+backward: {time.perf_counter() - start:.3f} s")
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() > 0
    assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


def test_make_guidance_loads_zero123(checkpoint):
    notes = []
    guidance = make_guidance(GuidanceConfig(kind="zero123", zero123_model=str(checkpoint)), None,
                             reference_view().image, "cpu", notes)
    assert guidance.name == "zero123" and notes == []


def test_missing_folder_and_parts(checkpoint, tmp_path):
    with pytest.raises(WeightsMissingError, match="no --zero123-model") as info:
        zero123_model_check(None)
    assert "--guidance clip" in info.value.hint
    with pytest.raises(WeightsMissingError, match="does not exist"):
        zero123_model_check(str(tmp_path / "nowhere"))
    partial = tmp_path / "partial"
    for part in ZERO123_PARTS:
        if part != "clip_camera_projection":
            (partial / part).mkdir(parents=True)
    with pytest.raises(WeightsMissingError, match="lacks clip_camera_projection") as info:
        zero123_model_check(str(partial))
    assert "--zero123-model" in info.value.hint
    assert zero123_model_check(str(checkpoint)) == checkpoint


def test_missing_diffusers(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "diffusers", None)
    with pytest.raises(DependencyMissingError, match="diffusers") as info:
        zero123_model_check("anything")
    assert "[zero123]" in info.value.hint


def test_fallback_to_clip_records_a_note(tmp_path):
    from backend.models.clip import load_clip

    clip = load_clip("domain")
    notes = []
    guidance = make_guidance(GuidanceConfig(kind="zero123", zero123_model=str(tmp_path / "none"),
                                            allow_clip_fallback=True), clip, reference_view().image, "cpu", notes)
    assert guidance.name == "clip" and len(notes) == 1 and "CLIP guidance used instead" in notes[0]
    with pytest.raises(WeightsMissingError):
        make_guidance(GuidanceConfig(kind="zero123", zero123_model=str(tmp_path / "none")), clip,
                      reference_view().image, "cpu", [])
