"""TaskFormer on the tiny CLIPs: shapes, the zero-shot starting point, fine-tuning switches, checkpoints."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch
from taskformer_helpers import one_thread  # noqa: F401  (fixture)

from backend.errors import InvalidInputError
from backend.models import load_clip, save_clip_checkpoint
from backend.retrieve.evaluate import ZeroShot
from backend.retrieve.taskformer import (CHECKPOINT_FORMAT, TaskFormer, TaskFormerConfig, build_vocab,
                                         check_clip_spec, checkpoint_clip_spec, combine, load_taskformer,
                                         read_checkpoint, save_checkpoint, set_trainable)

CAPTIONS = ["a red chair with four legs", "a tall blue lamp with a drum shade", "a striped mug"]
CLASSES = ("chair", "lamp", "mug")

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(name: str = "tiny", **kwargs) -> TaskFormer:
    clip = load_clip(name)
    vocab = build_vocab(clip.tokenizer(CAPTIONS), clip.tokenizer.eot_token_id)
    torch.manual_seed(0)
    return TaskFormer(clip, TaskFormerConfig(class_names=CLASSES, decoder_vocab=vocab, **kwargs))


def _images(n: int, seed: int, size: int = 64) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["tiny", "tiny-rn"])
def test_forward_shapes_on_tiny_clips(name):
    model = _model(name)
    tokens = model.tokenize(CAPTIONS)
    out = model(_images(3, 0), _images(3, 1, size=48), tokens)
    d = model.embed_dim
    for key in ("image", "sketch", "text", "query"):
        assert out[key].shape == (3, d)
        assert torch.allclose(out[key].norm(dim=-1), torch.ones(3), atol=1e-5)
    assert [tuple(x.shape) for x in out["class_logits"]] == [(3, 3)] * 3
    logits, targets = out["caption_logits"], out["caption_targets"]
    longest = int((tokens != 0).sum(dim=1).max())  # start .. end tokens of the longest caption
    assert logits.shape == (3, longest - 1, len(model.config.decoder_vocab) + 1)
    assert targets.shape == (3, longest - 1)
    assert (targets[0] == -100).sum() > 0, "the shortest caption's padding is ignored"
    assert targets.max() < logits.shape[-1] and (targets[targets >= 0] > 0).all(), "known words, no <unk>"


def test_query_is_feature_addition():
    model = _model()
    sketches, tokens = _images(2, 2), model.tokenize(CAPTIONS[:2])
    with torch.no_grad():
        s, t = model.encode_sketch(sketches), model.encode_text(tokens)
        q = model.encode_query(sketches, tokens)
    assert torch.allclose(q, torch.nn.functional.normalize(s + t, dim=-1), atol=1e-6)
    assert torch.allclose(q, combine(s, t))
    assert torch.allclose(model.encode_query(sketches, None), s) and torch.allclose(model.encode_query(None, tokens), t)
    with pytest.raises(InvalidInputError, match="sketch, a text or both"):
        model.encode_query(None, None)


@pytest.mark.parametrize("share", [False, True])
def test_untrained_taskformer_embeds_like_the_clip_zero_shot(share):
    """No new layer sits in the embedding path: before training, TaskFormer is the zero-shot baseline."""
    clip = load_clip("tiny-rn")
    model, zero = _model("tiny-rn", share_image_tower=share), ZeroShot(clip)
    images, tokens = _images(3, 3), model.tokenize(CAPTIONS)
    with torch.no_grad():
        assert torch.allclose(model.encode_image(images), zero.encode_image(images), atol=1e-6)
        assert torch.allclose(model.encode_sketch(images), zero.encode_sketch(images), atol=1e-6)
        assert torch.allclose(model.encode_text(tokens), zero.encode_text(tokens), atol=1e-6)
    assert (model.sketch_visual is None) == share


def test_towers_are_private_copies_of_the_cached_clip():
    clip = load_clip("tiny")
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    model = _model()
    set_trainable(model, -1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in clip.model.state_dict().items())
    assert not any(p.requires_grad for p in clip.model.parameters())
    assert model.sketch_visual is not model.clip_model.visual


def test_set_trainable_freezes_all_but_the_last_blocks():
    model = _model("tiny-rn")
    names = set(set_trainable(model, 1))
    assert any(n.startswith("clip_model.visual.layer4.") for n in names)
    assert not any(n.startswith("clip_model.visual.layer3.") for n in names)
    assert any(n.startswith("sketch_visual.layer4.") for n in names)
    assert any(n.startswith("clip_model.visual.attnpool.") for n in names)
    assert "clip_model.text_projection" in names and "clip_model.logit_scale" in names
    assert "clip_model.token_embedding.weight" not in names
    assert any(n.startswith("decoder.") for n in names) and any(n.startswith("classifier.") for n in names)
    projections_only = set(set_trainable(model, 0))
    assert not any(".layer4." in n for n in projections_only) and "clip_model.text_projection" in projections_only
    assert set(set_trainable(model, -1)) == {n for n, _ in model.named_parameters()}
    vit = _model("tiny")
    vit_names = set(set_trainable(vit, 1))
    assert "clip_model.visual.proj" in vit_names
    assert "clip_model.visual.transformer.resblocks.1.attn.in_proj_weight" in vit_names
    assert "clip_model.visual.transformer.resblocks.0.attn.in_proj_weight" not in vit_names
    with pytest.raises(ValueError, match="train_layers"):
        set_trainable(model, -2)


def test_checkpoint_round_trip_is_plain_data(tmp_path: Path):
    model = _model("tiny-rn")
    set_trainable(model, 1)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    out = model(_images(3, 4), _images(3, 5), model.tokenize(CAPTIONS))
    (out["image"] * out["query"]).sum().neg().backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / "tf.pt", model, optimizer, step=7, config={"steps": 9}, extra={"note": "x"})
    raw = torch.load(path, map_location="cpu", weights_only=True)  # no pickled classes
    assert raw["format"] == CHECKPOINT_FORMAT and raw["step"] == 7 and raw["clip"]["spec"] == "tiny-rn"
    assert raw["train"] == {"steps": 9} and raw["optimizer"] is not None and raw["extra"] == {"note": "x"}
    assert checkpoint_clip_spec(path) == "tiny-rn"
    loaded = load_taskformer(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    images, tokens = _images(2, 6), loaded.tokenize(CAPTIONS[:2])
    with torch.no_grad():
        model.eval()
        for name, args in (("encode_image", (images,)), ("encode_sketch", (images,)), ("encode_text", (tokens,)),
                           ("encode_query", (images, tokens))):
            assert torch.allclose(getattr(model, name)(*args), getattr(loaded, name)(*args), atol=1e-6), name
    assert loaded.config == model.config and loaded.clip_spec == "tiny-rn"


def test_not_a_taskformer_checkpoint_is_a_clear_error(tmp_path: Path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pt")
    clip_ckpt = save_clip_checkpoint(load_clip("tiny"), tmp_path / "clip.pt")
    with pytest.raises(InvalidInputError, match="not a TASK-former checkpoint.*atelier-clip-1"):
        load_taskformer(clip_ckpt)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(InvalidInputError, match="not a TASK-former checkpoint"):
        load_taskformer(junk)
    torch.save({"a": torch.zeros(1)}, tmp_path / "dict.pt")
    with pytest.raises(InvalidInputError, match="not a TASK-former checkpoint"):
        load_taskformer(tmp_path / "dict.pt")
    # A pickled object (not plain data) is refused by the weights-only loader.
    torch.save({"format": CHECKPOINT_FORMAT, "model": Path("x")}, tmp_path / "pickled.pt")
    assert zipfile.is_zipfile(tmp_path / "pickled.pt")
    with pytest.raises(InvalidInputError, match="not a TASK-former checkpoint"):
        load_taskformer(tmp_path / "pickled.pt")


def test_damaged_checkpoint_weights_are_a_clear_error(tmp_path: Path):
    path = save_checkpoint(tmp_path / "tf.pt", _model())
    raw = torch.load(path, weights_only=True)
    raw["state_dict"].pop("classifier.net.0.weight")
    torch.save(raw, path)
    with pytest.raises(InvalidInputError, match="does not hold a TASK-former"):
        load_taskformer(path)


def test_clip_spec_mismatch_is_a_clear_error():
    assert check_clip_spec("tiny", None, "the checkpoint") == "tiny"
    assert check_clip_spec("tiny", " tiny ", "the checkpoint") == "tiny"
    with pytest.raises(InvalidInputError, match="built from the CLIP 'tiny', not 'domain'") as info:
        check_clip_spec("tiny", "domain", "the checkpoint")
    assert "--clip tiny" in info.value.hint


def test_config_is_validated():
    with pytest.raises(ValueError, match="two or more classes"):
        TaskFormerConfig(class_names=("chair",), decoder_vocab=(1,))
    with pytest.raises(ValueError, match="decoder_vocab"):
        TaskFormerConfig(class_names=CLASSES)
    with pytest.raises(ValueError, match="multiple of"):
        TaskFormerConfig(class_names=CLASSES, decoder_vocab=(1,), decoder_width=30, decoder_heads=4)
    with pytest.raises(InvalidInputError, match="int64"):
        _model().encode_text(torch.zeros(2, 77))
