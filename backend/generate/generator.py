"""The trained text-to-shape generator as one file: the occupancy autoencoder, the conditional latent flow, the
CLIP that made the flow's conditions, and the library it learnt from.

The file is a plain dict (`torch.load(..., weights_only=True)` reads it):
{"kind": "atelier.generator", "version": 1, "clip": spec, "condition_dim": C,
 "library": {"fingerprint", "root", "shapes", "categories": {name: count}},
 "autoencoder": {"model_config", "model"}, "flow": {"model_config", "model"}, "train": {...figures}}.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from backend.checkpoints import save_atomic
from backend.errors import InvalidInputError
from backend.generate.flow import ConditionalRealNVP, FlowConfig
from backend.generate.occupancy import OccupancyAutoencoder, stored_config

CHECKPOINT_KIND = "atelier.generator"
VERSION = 1


@dataclass
class Generator:
    """A loaded generator (both models in eval mode on one device)."""

    autoencoder: OccupancyAutoencoder
    flow: ConditionalRealNVP
    clip_spec: str
    """The CLIP spec whose image embeddings trained the flow; prompts must be encoded with the same CLIP."""
    library: dict
    """{"fingerprint", "root", "shapes", "categories"} of the training library."""
    train: dict
    """Training figures (steps, final losses, seconds)."""
    path: Path | None = None

    @property
    def condition_dim(self) -> int:
        return self.flow.config.condition_dim

    def check_clip(self, clip) -> None:
        """InvalidInputError unless `clip` is the CLIP this generator was trained with (same spec and width)."""
        if clip.spec != self.clip_spec:
            raise InvalidInputError(
                f"the generator {self.path or ''} was trained with the CLIP {self.clip_spec!r}, not {clip.spec!r}",
                f"leave out the CLIP option to use {self.clip_spec!r}, or train a generator with {clip.spec!r}")
        if clip.embed_dim != self.condition_dim:
            raise InvalidInputError(
                f"the CLIP {clip.spec!r} gives {clip.embed_dim}-d embeddings; the generator expects {self.condition_dim}",
                "train the generator with this CLIP")


def save_generator(path: str | Path, autoencoder: OccupancyAutoencoder, flow: ConditionalRealNVP, clip_spec: str,
                   library: dict, train: dict) -> Path:
    """Writes the generator file (module doc) atomically."""
    def part(model) -> dict:
        return {"model_config": asdict(model.config),
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}

    state = {"kind": CHECKPOINT_KIND, "version": VERSION, "clip": clip_spec,
             "condition_dim": flow.config.condition_dim, "library": library,
             "autoencoder": part(autoencoder), "flow": part(flow), "train": train}
    return save_atomic(state, path)


def load_generator(path: str | Path, device: torch.device | str = "cpu",
                   library_fingerprint: str | None = None) -> Generator:
    """The generator at `path`. InvalidInputError for a missing file, another kind of file (an autoencoder or
    flow training checkpoint, anything else), a newer format, or a library fingerprint other than the one given."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidInputError(f"no generator checkpoint at {path}",
                                "train one with `atelier train-generator --library DIR --out FILE`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bytes that are not a checkpoint (struct.error, EOFError...)
        raise InvalidInputError(f"{path} is not a generator checkpoint (it cannot be read: {type(exc).__name__})",
                                "pass the file `atelier train-generator` wrote") from exc
    if not isinstance(state, dict) or state.get("kind") != CHECKPOINT_KIND:
        found = state.get("kind") if isinstance(state, dict) else None
        raise InvalidInputError(
            f"{path} is not a generator checkpoint" + (f" (it is a {found} file)" if found else ""),
            "pass the file `atelier train-generator` wrote (the .parts folder holds only training state)")
    if int(state.get("version", 0)) > VERSION:
        raise InvalidInputError(f"{path} was written by a newer Atelier (format {state['version']})",
                                "update Atelier, or retrain the generator")
    library = state.get("library") if isinstance(state.get("library"), dict) else {}
    if library_fingerprint is not None and library.get("fingerprint") != library_fingerprint:
        raise InvalidInputError(f"the generator {path} was trained on another library "
                                f"(fingerprint {str(library.get('fingerprint'))[:12]}, this one {library_fingerprint[:12]})",
                                "retrain the generator on this library, or pass the library it was trained on")
    try:
        autoencoder = OccupancyAutoencoder(stored_config(state["autoencoder"]["model_config"]))
        autoencoder.load_state_dict(state["autoencoder"]["model"])
        flow = ConditionalRealNVP(FlowConfig(**state["flow"]["model_config"]))
        flow.load_state_dict(state["flow"]["model"])
        return Generator(autoencoder=autoencoder.to(device).eval(), flow=flow.to(device).eval(),
                         clip_spec=str(state["clip"]), library=dict(state["library"]),
                         train=dict(state.get("train", {})), path=path)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:  # a damaged or hand-made file
        raise InvalidInputError(f"{path} is a damaged generator checkpoint ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200] if str(exc) else 'incomplete'})",
                                "train the generator again with `atelier train-generator`") from exc
