"""`atelier train-generator` and `atelier generate`: CLIP-Forge."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backend.cli.common import Report, command, resolve, staged_progress_bars


# --------------------------------------------------------------------------------------- generate
@command("train-generator", "CLIP-Forge: train the occupancy autoencoder and the CLIP-conditioned latent flow on a "
                            "shape library (resumable)")
def _train_generator_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--library", required=True, help="folder of meshes (sub-folders or categories.json: categories)")
    parser.add_argument("--out", required=True, help="the generator checkpoint to write (.pt)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="passes over the library for each stage (default: the step counts below)")
    parser.add_argument("--ae-steps", type=int, default=3000, help="autoencoder steps (without --epochs)")
    parser.add_argument("--flow-steps", type=int, default=3000, help="flow steps (without --epochs)")
    parser.add_argument("--batch", type=int, default=32, help="shapes per step in both stages")
    parser.add_argument("--points", type=int, default=2048, help="occupancy points per shape per autoencoder step")
    parser.add_argument("--views", type=int, default=6, help="rendered views per shape that condition the flow")
    parser.add_argument("--latent", type=int, default=128, help="shape latent size")
    parser.add_argument("--decoder", choices=("grid", "global"), default="grid",
                        help="grid: the latent unfolds into a feature grid read by a small MLP (default); global: "
                             "CLIP-Forge's MLP on (point, latent)")
    parser.add_argument("--width", type=int, default=64, help="decoder MLP width")
    parser.add_argument("--flow-width", type=int, default=256, help="width of the flow's coupling networks")
    parser.add_argument("--encoder-channels", type=int, default=16,
                        help="channels of the voxel encoder's first conv (they double per halving)")
    parser.add_argument("--text-fraction", type=float, default=0.3,
                        help="share of flow training conditions that are texts (captions.json, category prompts) "
                             "rather than rendered views")
    parser.add_argument("--init", default=None, metavar="GENERATOR",
                        help="fine-tune this generator (e.g. the shipped one: 'shipped') on the library instead of "
                             "training from scratch; its model sizes are kept")
    parser.add_argument("--max-shapes", type=int, default=0, help="train on the first N library files (0: all)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from OUT.parts")
    parser.add_argument("--db", default="",
                        help="a retrieval database of this library (`atelier index`): reuse its view embeddings")


@_train_generator_args.run
def _train_generator(args, report: Report) -> None:
    from backend.errors import InvalidInputError
    from backend.generate.flow import FlowConfig
    from backend.generate.occupancy import OccupancyAutoencoderConfig
    from backend.generate.train_autoencoder import AutoencoderTrainConfig
    from backend.generate.train_flow import FlowTrainConfig
    from backend.generate.train_generator import GeneratorTrainConfig, train_generator
    from backend.models.clip import load_clip

    for name in ("ae_steps", "flow_steps", "batch", "points", "views", "latent", "width", "flow_width",
                 "encoder_channels"):
        if getattr(args, name) < 1:
            raise InvalidInputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.batch < 2:
        raise InvalidInputError(f"--batch must be >= 2 (the flow's batch-norm), got {args.batch}")
    try:
        config = GeneratorTrainConfig(
            autoencoder=OccupancyAutoencoderConfig(latent_dim=args.latent, decoder=args.decoder,
                                                   decoder_hidden=args.width, encoder_channels=args.encoder_channels),
            autoencoder_training=AutoencoderTrainConfig(steps=args.ae_steps, batch_size=args.batch,
                                                        points_per_shape=args.points, seed=args.seed),
            flow=FlowConfig(hidden=args.flow_width),
            flow_training=FlowTrainConfig(steps=args.flow_steps, batch_size=args.batch, seed=args.seed,
                                          text_fraction=args.text_fraction),
            views=args.views, max_shapes=args.max_shapes, index_db=args.db)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from exc
    device = resolve(args, report)
    init = None
    if args.init:
        from backend.generate.generator import load_generator
        from backend.generate.shipped import resolve_generator

        init = load_generator(resolve_generator(None if args.init == "shipped" else args.init), device)
    clip = load_clip(args.clip or (init.clip_spec if init else "domain"), device, allow_download=args.allow_download)
    progress, close = staged_progress_bars()
    try:
        result = train_generator(args.library, args.out, clip, config, epochs=args.epochs, resume=args.resume,
                                 device=device, init=init, progress=progress)
    finally:
        close()
    report.update(result.as_dict(), clip=clip.spec, out=str(args.out))
    for line in result.skipped:
        print(f"skipped {line}", file=sys.stderr)
    for line in result.notes:
        print(line, file=sys.stderr)
    print(f"wrote {args.out}: {result.shapes} shapes, reconstruction IoU {result.reconstruction_iou:.3f}, "
          f"flow NLL/dim {result.flow_loss:.3f}")


@command("generate", "CLIP-Forge: shapes from a text prompt (N samples, optional ISS refinement and Text2Mesh style)")
def _generate_args(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt", help="the shape, e.g. 'a round table' or 'a chair made of oak'")
    what.add_argument("--image", help="or a picture of the shape (its CLIP image embedding conditions the flow)")
    parser.add_argument("--checkpoint", default=None,
                        help="a generator from `atelier train-generator` (default: the shipped generator, "
                             "backend/models/weights/generator_domain.pt, or the file $ATELIER_GENERATOR names)")
    parser.add_argument("--out", required=True, help="output .glb; with --samples N > 1: OUT_0.glb ... OUT_{N-1}.glb, "
                                                      "best CLIP score first")
    parser.add_argument("--samples", type=int, default=1, help="shapes to draw (1-16)")
    parser.add_argument("--refine", type=int, default=0, metavar="STEPS", help="ISS test-time refinement steps")
    parser.add_argument("--style", default=None,
                        help="stylize the shapes with Text2Mesh: a text, or 'auto' to split the prompt "
                             "('a chair made of oak' -> shape 'a chair', style the whole prompt)")
    parser.add_argument("--style-quality", choices=("draft", "standard", "high"), default="draft")
    parser.add_argument("--style-steps", type=int, default=None, help="Text2Mesh steps (default: the preset's)")
    parser.add_argument("--resolution", type=int, default=64, help="grid cells per axis (32-256)")
    parser.add_argument("--coarse", type=int, default=32, help="coarse grid of the coarse-to-fine decode (0: dense)")
    parser.add_argument("--threshold", type=float, default=0.5, help="occupancy probability of the surface")
    parser.add_argument("--temperature", type=float, default=0.5, help="flow sampling temperature (0: the flow's mode)")


def generated_paths(out: str, count: int) -> list[Path]:
    out_path = Path(out)
    if count == 1:
        return [out_path]
    return [out_path.with_name(f"{out_path.stem}_{i}{out_path.suffix or '.glb'}") for i in range(count)]


@_generate_args.run
def _generate(args, report: Report) -> None:
    from backend.errors import InvalidInputError
    from backend.generate.decode import DecodeConfig
    from backend.generate.generate import (GenerateConfig, check_generate_prompt, generate, image_condition,
                                           prompt_condition, resolve_style, shape_glbs, stylize_shapes)
    from backend.generate.generator import load_generator
    from backend.generate.shipped import resolve_generator
    from backend.images import load_image
    from backend.models.clip import load_clip

    prompt = check_generate_prompt(args.prompt) if args.image is None else None
    image = load_image(args.image, what="shape picture") if args.image is not None else None
    if args.style is not None and not args.style.strip():
        raise InvalidInputError("--style is empty", hint="give a style text, 'auto', or leave --style out")
    prompt, style = resolve_style(prompt, args.style)
    if not 32 <= args.resolution <= 256:
        raise InvalidInputError(f"--resolution must be in [32, 256], got {args.resolution}")
    try:
        config = GenerateConfig(samples=args.samples, temperature=args.temperature, refine_steps=args.refine,
                                seed=args.seed, decode=DecodeConfig(resolution=args.resolution, threshold=args.threshold,
                                                                    coarse_resolution=args.coarse))
    except ValueError as exc:
        raise InvalidInputError(str(exc), hint="see `atelier generate --help`") from exc
    device = resolve(args, report)
    generator = load_generator(resolve_generator(args.checkpoint), device)
    clip = load_clip(args.clip or generator.clip_spec, device, allow_download=args.allow_download)
    progress, close = staged_progress_bars()
    try:
        condition = prompt_condition(clip, prompt) if prompt is not None else image_condition(clip, image)
        shapes = generate(generator, clip, condition, config, progress=progress)
        styled = stylize_shapes(shapes, style, clip, args.style_quality, args.style_steps, args.seed, device,
                                progress=progress) if style else None
    finally:
        close()
    paths = generated_paths(args.out, len(shapes))
    for path, glb in zip(paths, shape_glbs(shapes, styled)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(glb)
    # `generate` returns the shapes best first, so OUT_0.glb is the best-scoring sample.
    before = [s.clip_score_before for s in shapes]
    after = [s.clip_score_after for s in shapes]
    report.update(samples=len(shapes), prompt=prompt, image=args.image, style=style, clip=clip.spec, outputs=[str(p) for p in paths],
                  clip_score_before=sum(before) / len(before), clip_score_after=sum(after) / len(after),
                  clip_scores_before=before, clip_scores_after=after, refine_steps=args.refine,
                  ranked_by="clip_score_after", sample=[s.sample for s in shapes], rank=[s.rank for s in shapes],
                  cleanup=[s.cleanup for s in shapes],
                  vertices=[s.mesh.num_vertices for s in shapes], faces=[s.mesh.num_faces for s in shapes],
                  seconds_per_shape=[round(s.seconds, 3) for s in shapes],
                  style_loss_last=[r.losses[-1] for r in styled] if styled else None)
    for shape, path in zip(shapes, paths):
        floaters = shape.cleanup.get("pieces_removed", 0)
        print(f"wrote {path}: #{shape.rank + 1} (draw {shape.sample}), {shape.mesh.num_faces} faces, "
              f"CLIP score {shape.clip_score_before:.3f}" + (f" -> {shape.clip_score_after:.3f}" if args.refine else "")
              + (f", {floaters} floating piece(s) removed" if floaters else ""))
