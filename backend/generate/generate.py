"""Text (or image) to shapes: a CLIP embedding conditions the flow, its samples decode to meshes, optionally
refined by CLIP consistency of rendered views (ISS) and stylized by Text2Mesh ("a chair made of oak" once).

Meshes come out in the voxel frame (inside the cube [-1, 1]^3 that holds the unit-sphere-normalised training
shapes; Y up: glTF's frame, metres).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field

import torch

from backend.errors import InvalidInputError
from backend.generate.decode import DecodeConfig, decode_latent
from backend.generate.generator import Generator
from backend.generate.refine import RefineConfig, clip_score, heldout_views, refine_latent
from backend.geometry.mesh import Mesh
from backend.progress import CancelToken, ProgressFn, no_progress

MAX_SAMPLES = 16
SHAPE_HINT = "describe the shape in words, e.g. 'a round table'"

_STYLE_MARKERS = re.compile(r"\s+(?:made of|made from|built from|carved from|covered in|in the style of|"
                            r"styled as|with a texture of|textured with)\s+", re.IGNORECASE)


def split_prompt(prompt: str) -> tuple[str, str | None]:
    """'a chair made of oak' -> ('a chair', 'a chair made of oak'): the shape part for the generator, and the
    whole text for the stylizer (None when the prompt names no material or style)."""
    match = _STYLE_MARKERS.search(prompt)
    if match is None or not prompt[:match.start()].strip():
        return prompt.strip(), None
    return prompt[:match.start()].strip(), prompt.strip()


def resolve_style(prompt: str | None, style: str | None) -> tuple[str | None, str | None]:
    """(the prompt the generator gets, the Text2Mesh style or None) for a request's prompt (None: a picture only)
    and style (None or "": none; "auto": `split_prompt`, the whole prompt when it names no material; else the text).
    InvalidInputError for "auto" without a prompt."""
    style = (style or "").strip() or None
    if style != "auto":
        return prompt, style
    if not prompt:
        raise InvalidInputError("the 'auto' style splits a prompt, and only a picture was sent",
                                hint="give the style text itself, or add a prompt")
    shape_prompt, styled = split_prompt(prompt)
    return shape_prompt, styled or prompt


@dataclass
class GenerateConfig:
    """How shapes are drawn for one prompt."""

    samples: int = 1
    """Shapes per prompt (each its own flow sample), for the user to choose from."""
    temperature: float = 0.8
    """Scale of the Gaussian draws the flow maps back to latents (below 1: typical shapes; above: variety)."""
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    """Grid resolution (coarse to fine), threshold and clean-up of the extracted surface."""
    refine_steps: int = 0
    """ISS-style test-time refinement steps per sample (0: none)."""
    refine: RefineConfig = field(default_factory=RefineConfig)
    """How refinement renders and optimises (its `steps`, `seed`, `device` and `threshold` come from here)."""
    seed: int = 0
    """Seeds the flow's draws and the refinement's cameras."""

    def __post_init__(self) -> None:
        if not 1 <= self.samples <= MAX_SAMPLES:
            raise InvalidInputError(f"samples must be in [1, {MAX_SAMPLES}], got {self.samples}")
        if not 0.0 <= self.temperature <= 3.0:
            raise InvalidInputError(f"temperature must be in [0, 3], got {self.temperature}")
        if self.refine_steps < 0:
            raise InvalidInputError(f"refine steps must be >= 0, got {self.refine_steps}")


@dataclass
class GeneratedShape:
    mesh: Mesh
    """Watertight surface in the voxel frame, outward faces, metadata["normals"]."""
    latent: torch.Tensor
    """[L] the latent the mesh decodes from (after refinement)."""
    clip_score_before: float
    """Mean CLIP cosine of the prompt to held-out grey views of the unrefined sample."""
    clip_score_after: float
    """The same after refinement (equal to before without refinement)."""
    seconds: float
    """Wall time of this sample: decoding, scoring and refinement."""
    sample: int = 0
    """The draw this shape came from (0-based, the order the flow sampled them in)."""
    rank: int = 0
    """Place among the job's samples by `clip_score_after`, 0 = best (`generate` returns them in this order)."""
    cleanup: dict = field(default_factory=dict)
    """What the surface clean-up did (`CleanupReport.as_dict()`: floaters removed, smoothing's volume change)."""

    @property
    def clip_score(self) -> float:
        """The score samples are ranked by: the held-out-view CLIP score after refinement."""
        return self.clip_score_after


def prompt_condition(clip, prompt: str) -> torch.Tensor:
    """The flow's condition for a text: the normalised CLIP text embedding [C] (CPU float32)."""
    from backend.stylize.losses import check_prompt

    text = check_prompt(prompt, clip.context_length, clip.tokenizer, hint=SHAPE_HINT)
    with torch.no_grad():
        return clip.encode_text([text])[0].float().cpu()


def image_condition(clip, image) -> torch.Tensor:
    """The flow's condition for an image (tensor or array, [3, H, W] or [H, W, 3|4] in [0, 1], e.g. from
    `backend.images.load_image`): its normalised CLIP embedding [C]."""
    image = torch.as_tensor(image, dtype=torch.float32)
    if image.dim() == 3 and image.shape[-1] in (3, 4) and image.shape[0] not in (3, 4):
        image = image[..., :3].permute(2, 0, 1)
    with torch.no_grad():
        return clip.encode_image(image[None, :3].float())[0].float().cpu()


def generate(generator: Generator, clip, condition: torch.Tensor, config: GenerateConfig | None = None, *,
             name: str = "generated", progress: ProgressFn = no_progress,
             cancel: CancelToken | None = None) -> list[GeneratedShape]:
    """`config.samples` shapes for one condition ([C], from `prompt_condition` or `image_condition`), best first:
    sorted by their held-out-view CLIP score (`clip_score_after`, ties in draw order), each knowing its draw
    (`sample`) and place (`rank`); meshes are named f"{name}_{rank}".

    clip must be the generator's CLIP (checked). progress(done, total, stage="sample"|"refine", **metrics);
    `cancel` is checked between samples and at every refinement step. A sample whose decoded surface is empty
    raises InvalidInputError suggesting a lower threshold.
    """
    config = config or GenerateConfig()
    generator.check_clip(clip)
    device = next(generator.flow.parameters()).device
    torch_generator = torch.Generator(device=device).manual_seed(config.seed)
    latents = generator.flow.sample(condition.to(device), config.samples, torch_generator, config.temperature)
    refine_config = RefineConfig(**{**config.refine.__dict__, "steps": max(config.refine_steps, 1),
                                    "seed": config.seed, "device": str(device),
                                    "threshold": config.decode.threshold})
    cameras, lights = heldout_views(refine_config, device)
    out = []
    for index, latent in enumerate(latents):
        if cancel is not None:
            cancel.check()
        started = time.perf_counter()
        if config.refine_steps:
            def step_progress(step, total, **metrics):
                progress(index * config.refine_steps + step, config.samples * config.refine_steps, stage="refine",
                         sample=index, **metrics)

            # refine_latent scores the held-out views before and after itself.
            result = refine_latent(generator.autoencoder, latent, condition, clip, refine_config,
                                   progress=step_progress, cancel=cancel, scale=generator.flow.latent_std)
            latent, before, after = result.latent, result.score_before, result.score_after
        else:
            before = after = clip_score(generator.autoencoder, latent, condition, clip, cameras, lights, refine_config)
        mesh = decode_latent(generator.autoencoder, latent, config.decode, f"{name}_{index}")
        out.append(GeneratedShape(mesh=mesh, latent=latent.detach().cpu(), clip_score_before=float(before),
                                  clip_score_after=float(after), seconds=time.perf_counter() - started,
                                  sample=index, cleanup=dict(mesh.metadata.get("cleanup", {}))))
        progress(index + 1, config.samples, stage="sample")
    return rank_shapes(out, name)


def rank_shapes(shapes: list[GeneratedShape], name: str = "generated") -> list[GeneratedShape]:
    """The shapes best first by `clip_score_after` (a stable sort: ties keep draw order), with `rank` set and each
    mesh renamed f"{name}_{rank}" so files and objects named by position match the order."""
    # A NaN score (a degenerate render) sorts last rather than scrambling the order.
    ordered = sorted(shapes, key=lambda shape: (math.isnan(shape.clip_score_after), -shape.clip_score_after))
    for rank, shape in enumerate(ordered):
        shape.rank = rank
        shape.mesh.name = f"{name}_{rank}"
    return ordered


def check_generate_prompt(prompt) -> str:
    """The prompt stripped; InvalidInputError for a non-text, empty or too long one (before any model loads)."""
    from backend.stylize.losses import check_prompt

    return check_prompt(prompt, hint=SHAPE_HINT)


def stylize_shapes(shapes: list[GeneratedShape], style: str, clip, quality: str = "draft", steps: int | None = None,
                   seed: int = 0, device: torch.device | str = "cpu", progress: ProgressFn = no_progress,
                   cancel: CancelToken | None = None) -> list:
    """Text2Mesh on each generated shape with the `style` text: one `StylizeResult` per shape (vertex colours and
    a displacement along the normals). progress(step, total, stage="style", sample=i, **metrics)."""
    from backend.stylize.text2mesh import preset, stylize

    config = preset(quality, steps=steps, seed=seed)
    config.check()
    results = []
    for index, shape in enumerate(shapes):
        def step_progress(step, total, **metrics):
            progress(index * total + step, len(shapes) * total, stage="style", sample=index, **metrics)

        results.append(stylize(shape.mesh, style, clip, config, device=device, progress=step_progress, cancel=cancel))
    return results


def shape_glbs(shapes: list[GeneratedShape], styled: list | None = None) -> list[bytes]:
    """GLB bytes of each generated shape: its `stylize_shapes` result when given (vertex colours and the Text2Mesh
    shape key), else the plain surface."""
    from backend.geometry.glb import export_glb
    from backend.stylize.output import export_stylized_glb

    if styled:
        return [export_stylized_glb(result, name=shape.mesh.name) for shape, result in zip(shapes, styled)]
    return [export_glb(shape.mesh, name=shape.mesh.name) for shape in shapes]
