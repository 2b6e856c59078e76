"""load_clip: tiny models, preprocessing, offline failures, Atelier checkpoints and local weight files."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import open_clip
import pytest
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from backend.devices import resolve_device
from backend.errors import InvalidInputError, WeightsMissingError
from backend.models import clip as clip_module
from backend.models import store
from backend.models.clip import (
    CHECKPOINT_FORMAT,
    CLIP_RESOLVERS,
    TINY,
    TINY_RN,
    clip_from_config,
    load_clip,
    register_clip_resolver,
    release_all,
    save_clip_checkpoint,
    tiny_clip,
)

pytestmark = pytest.mark.usefixtures("fresh_clip_cache")

TINY_SPECS = {"tiny": "vit", "tiny-rn": "resnet"}


def _images(n: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=generator)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("spec", TINY_SPECS)
def test_tiny_models_load_with_the_real_preprocessing(spec: str):
    clip = load_clip(spec, device="cpu")
    assert clip.tower == TINY_SPECS[spec]
    assert (clip.spec, clip.name, clip.image_size, clip.embed_dim) == (spec, spec, 64, 64)
    assert clip.mean == OPENAI_DATASET_MEAN and clip.std == OPENAI_DATASET_STD
    assert not clip.model.training
    assert not any(p.requires_grad for p in clip.model.parameters())
    assert isinstance(clip.tokenizer, open_clip.tokenizer.SimpleTokenizer) and clip.context_length == 77


@pytest.mark.parametrize("config", [TINY, TINY_RN], ids=["vit", "resnet"])
def test_tiny_models_are_seeded_and_leave_the_global_rng_alone(config):
    state = torch.random.get_rng_state()
    a, b = tiny_clip(config), tiny_clip(config)
    assert torch.equal(state, torch.random.get_rng_state())
    assert _same_weights(a.model, b.model)
    other = tiny_clip(type(config)(**{**config.__dict__, "seed": config.seed + 1}))
    assert not _same_weights(a.model, other.model)


def test_load_clip_caches_per_spec_and_device_until_release():
    first = load_clip("tiny", device="cpu")
    assert load_clip("tiny", device=torch.device("cpu")) is first
    if resolve_device("auto").type == "cpu":
        assert load_clip("tiny", device="auto") is first
    assert release_all() >= 1
    again = load_clip("tiny")
    assert again is not first and _same_weights(again.model, first.model)


@pytest.mark.parametrize("spec", TINY_SPECS)
def test_encodings_have_the_right_shapes_and_unit_norm(spec: str):
    clip = load_clip(spec)
    images = clip.encode_image(_images(3))
    texts = clip.encode_text(["a red chair", "a wooden table with four legs"])
    assert images.shape == (3, 64) and texts.shape == (2, 64)
    assert images.dtype == texts.dtype == torch.float32
    torch.testing.assert_close(images.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(texts.norm(dim=-1), torch.ones(2))
    raw = clip.encode_image(_images(3), normalize=False)
    torch.testing.assert_close(torch.nn.functional.normalize(raw, dim=-1), images)
    assert not torch.allclose(texts[0], texts[1])


@pytest.mark.parametrize("spec", TINY_SPECS)
@pytest.mark.parametrize("size", [64, 96])
def test_gradients_flow_to_input_images(spec: str, size: int):
    clip = load_clip(spec)
    images = _images(2, size).requires_grad_(True)
    target = clip.encode_text(["a blue vase"]).detach()
    loss = 1 - (clip.encode_image(images) @ target.T).mean()
    loss.backward()
    assert images.grad is not None and images.grad.shape == images.shape
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


def test_preprocess_resizes_and_normalises():
    clip = load_clip("tiny")
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    for size in (32, 64, 128):  # grow, keep, shrink (antialiased): a flat image stays flat
        flat = torch.full((2, 3, size, size), 0.25)
        out = clip.preprocess(flat)
        assert out.shape == (2, 3, 64, 64)
        torch.testing.assert_close(out, ((0.25 - mean) / std).expand(2, 3, 64, 64))
    images = _images(1)
    torch.testing.assert_close(clip.preprocess(images), (images - mean) / std)
    # Wide image: shorter side to 64, centre crop; a ramp's middle third sits in the middle.
    ramp = torch.linspace(0, 1, 192).view(1, 1, 1, 192).expand(1, 3, 64, 192).contiguous()
    out = clip.preprocess(ramp) * std + mean
    assert out.shape == (1, 3, 64, 64)
    assert abs(out[0, 0, :, 0].mean().item() - 1 / 3) < 0.02 and abs(out[0, 0, :, -1].mean().item() - 2 / 3) < 0.02


def test_preprocess_to_a_larger_image_size():
    """A 64-px render goes to the model's own size (224 for real CLIPs)."""
    config = open_clip.get_model_config("ViT-B-32")
    config["vision_cfg"].update(layers=1, width=64, head_width=32, image_size=224)
    config["text_cfg"].update(layers=1, width=32, heads=2)
    config["embed_dim"] = 16
    clip = clip_from_config(config, name="small-224")
    images = _images(1).requires_grad_(True)
    assert clip.preprocess(images).shape == (1, 3, 224, 224)
    clip.encode_image(images).sum().backward()
    assert images.grad.abs().sum() > 0


@pytest.mark.parametrize("bad", [torch.rand(3, 64, 64), torch.rand(1, 4, 64, 64),
                                 torch.zeros(1, 3, 64, 64, dtype=torch.uint8), [[0.0]]])
def test_bad_images_are_rejected(bad):
    with pytest.raises(InvalidInputError) as err:
        load_clip("tiny").encode_image(bad)
    assert err.value.hint


@pytest.mark.parametrize("bad", ["a chair", [], ["ok", 3]])
def test_bad_texts_are_rejected(bad):
    with pytest.raises(InvalidInputError):
        load_clip("tiny").encode_text(bad)


def test_missing_pretrained_weights_fail_fast_offline(empty_caches: Path, monkeypatch: pytest.MonkeyPatch):
    def refuse(*args, **kwargs):
        raise AssertionError("load_clip must not download without allow_download")

    monkeypatch.setattr(clip_module, "pull", refuse)
    monkeypatch.setattr(store.urllib.request, "urlopen", refuse)
    start = time.perf_counter()
    with pytest.raises(WeightsMissingError) as err:
        load_clip("ViT-B-32:openai")
    assert time.perf_counter() - start < 5
    text = str(err.value)
    assert "open_clip_model.safetensors" in text and "605 MB" in text
    assert "atelier models pull ViT-B-32:openai" in err.value.hint
    assert "--allow-download" in err.value.hint
    assert err.value.code == "weights_missing"


def test_allow_download_tries_the_hub_and_fails_fast_here(empty_caches: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.atelier-test.invalid")
    start = time.perf_counter()
    with pytest.raises(WeightsMissingError, match="hub.atelier-test.invalid"):
        load_clip("RN50:openai", allow_download=True)
    assert time.perf_counter() - start < 15


def test_resolver_registry(monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(ValueError, match="already registered"):
        register_clip_resolver("tiny", CLIP_RESOLVERS["tiny"])
    with pytest.raises(ValueError, match="plain name"):
        register_clip_resolver("a:b", CLIP_RESOLVERS["tiny"])
    monkeypatch.setitem(CLIP_RESOLVERS, "domain", CLIP_RESOLVERS["domain"])  # restored after the test
    register_clip_resolver("domain", lambda spec, device, allow: tiny_clip(TINY, "domain", device), replace=True)
    assert load_clip("domain").name == "domain"


@pytest.mark.parametrize("spec, message", [
    ("", "empty"),
    ("nonsense", "unknown CLIP spec"),
    ("NoSuchArch:openai", "unknown CLIP architecture"),
    ("ViT-B-32", "no weights"),
    ("ViT-B-32:no_such_tag", "no pretrained tag"),
    ("/no/such/atelier_clip.pt", "does not exist"),
    ("missing_clip.pt", "does not exist"),
    ("ViT-B-32:/no/such/file.pt", "does not exist"),
])
def test_bad_specs_say_what_to_do(spec: str, message: str):
    with pytest.raises(InvalidInputError, match=message) as err:
        load_clip(spec)
    assert err.value.hint


@pytest.mark.parametrize("spec", TINY_SPECS)
def test_checkpoint_round_trip_gives_identical_embeddings(spec: str, tmp_path: Path):
    clip = load_clip(spec)
    path = save_clip_checkpoint(clip, tmp_path / "ckpt" / f"{spec}.pt", spec_name="domain")
    loaded = load_clip(str(path))
    assert loaded is not clip and loaded.spec == str(path.resolve()) and loaded.name == "domain"
    for field in ("tower", "image_size", "mean", "std", "embed_dim", "model_cfg"):
        assert getattr(loaded, field) == getattr(clip, field)
    images, texts = _images(2), ["a lamp", "a sofa"]
    assert torch.equal(loaded.encode_image(images), clip.encode_image(images))
    assert torch.equal(loaded.encode_text(texts), clip.encode_text(texts))
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == CHECKPOINT_FORMAT and set(raw) == {
        "format", "model_cfg", "state_dict", "image_size", "mean", "std", "spec_name"}


def test_a_rewritten_checkpoint_is_not_served_from_the_cache(tmp_path: Path):
    path = tmp_path / "c.pt"
    save_clip_checkpoint(load_clip("tiny"), path)
    first = load_clip(str(path))
    save_clip_checkpoint(load_clip("tiny-rn"), path)
    assert load_clip(str(path)).tower == "resnet" and first.tower == "vit"


def test_files_that_are_not_atelier_checkpoints(tmp_path: Path):
    state_dict = tmp_path / "state_dict.pt"
    torch.save(load_clip("tiny").model.state_dict(), state_dict)
    with pytest.raises(InvalidInputError, match="not an Atelier CLIP checkpoint") as err:
        load_clip(str(state_dict))
    assert "ViT-B-32:" in err.value.hint
    future = tmp_path / "future.pt"
    torch.save({"format": "atelier-clip-9"}, future)
    with pytest.raises(InvalidInputError, match="atelier-clip-9"):
        load_clip(str(future))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file")
    with pytest.raises(InvalidInputError, match="could not read"):
        load_clip(str(garbage))


def test_arch_with_local_weights(small_arch_weights, tmp_path: Path):
    """`MODEL:/path` with a state dict saved from a random ViT-S-32-alt (the smallest standard arch)."""
    arch, path = small_arch_weights
    loaded = load_clip(f"{arch}:{path}")
    assert loaded.spec == f"{arch}:{path.resolve()}" and loaded.tower == "vit" and loaded.image_size == 224
    saved = torch.load(path, weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in loaded.model.state_dict().items())
    assert loaded.encode_image(_images(1, 96)).shape == (1, loaded.embed_dim)
    wrong = tmp_path / "tiny.pt"
    torch.save(load_clip("tiny").model.state_dict(), wrong)
    with pytest.raises(InvalidInputError, match="could not load") as err:
        load_clip(f"{arch}:{wrong}")
    assert "ViT-B-16:" in err.value.hint


def test_openai_torchscript_files_load(tmp_path: Path):
    """OpenAI's original .pt files are TorchScript archives; their weights load into the open_clip model."""
    clip = tiny_clip(TINY)
    tokens = clip.tokenizer(["a"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(clip.model, (torch.zeros(1, 3, 64, 64), tokens), strict=False, check_trace=False)
    path = tmp_path / "openai.pt"
    traced.save(str(path))
    target = tiny_clip(type(TINY)(seed=7))
    assert not _same_weights(target.model, clip.model)
    clip_module._load_weights(target.model, path, what="tiny", error=InvalidInputError, hint="")
    assert _same_weights(target.model, clip.model)
    with pytest.raises(InvalidInputError, match="TorchScript"):
        load_clip(str(path))  # as a bare path it is not an Atelier checkpoint: the error says so


def test_unsupported_open_clip_configs_are_refused():
    config = open_clip.get_model_config("ViT-B-32")
    config["vision_cfg"]["timm_model_name"] = "vit_base_patch32_224"
    with pytest.raises(InvalidInputError, match="timm image tower"):
        clip_from_config(config, name="timm")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("spec", TINY_SPECS)
def test_tiny_models_on_cuda_match_the_cpu(spec: str):
    cpu, gpu = load_clip(spec, "cpu"), load_clip(spec, "cuda")
    assert gpu is not cpu and gpu.device.type == "cuda"
    images = _images(2, 96)
    # cuDNN may use TF32 for convolutions: compare unit vectors loosely.
    torch.testing.assert_close(gpu.encode_image(images).cpu(), cpu.encode_image(images), atol=5e-3, rtol=0)
    torch.testing.assert_close(gpu.encode_text(["a chair"]).cpu(), cpu.encode_text(["a chair"]), atol=5e-3, rtol=0)
    x = _images(1, 96).cuda().requires_grad_(True)
    gpu.encode_image(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_pretrained_tag_loads_from_the_hf_cache(empty_caches: Path, small_arch_weights, place_hf_file,
                                                monkeypatch: pytest.MonkeyPatch):
    """The whole offline MODEL:TAG path, with an open_clip tag that points at a fake Hub repo."""
    arch, weights = small_arch_weights
    fake_cfgs = {
        "atelier_test": {"url": "", "hf_hub": "atelier/test-good/", "mean": (0.5, 0.5, 0.5), "std": OPENAI_DATASET_STD},
        "atelier_damaged": {"url": "", "hf_hub": "atelier/test-damaged/"},
    }
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, arch, fake_cfgs)
    monkeypatch.setattr(clip_module, "pull", lambda *a, **k: pytest.fail("must not download"))
    hub = empty_caches / "hf" / "hub"
    place_hf_file(hub, "atelier/test-good", "open_clip_pytorch_model.bin", weights.read_bytes())
    place_hf_file(hub, "atelier/test-damaged", "open_clip_model.safetensors", b"truncated")
    clip = load_clip(f"{arch}:atelier-test")  # open_clip's tag spelling rules apply
    assert clip.spec == clip.name == f"{arch}:atelier_test"
    assert clip.mean == (0.5, 0.5, 0.5) and clip.std == OPENAI_DATASET_STD
    saved = torch.load(weights, weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in clip.model.state_dict().items())
    with pytest.raises(WeightsMissingError, match="could not load") as err:
        load_clip(f"{arch}:atelier_damaged")
    assert f"atelier models pull {arch}:atelier_damaged" in err.value.hint
