"""The `atelier` command (DESIGN §4).

Every subcommand takes --device, --clip, --seed, --report and --debug. Errors exit non-zero with one
readable line (a traceback only with --debug). Heavy modules are imported inside the subcommand that
needs them, so `atelier --help` and `atelier doctor` stay fast.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

from backend.errors import AtelierError, JobCancelled

EXIT_ERROR = 2

# name -> (help, add_arguments(parser), run(args, report) -> None)
COMMANDS: dict[str, tuple[str, Callable, Callable]] = {}


def command(name: str, help: str):
    """Registers a subcommand: the decorated function adds its arguments; its `.run` does the work."""

    def register(add_arguments: Callable) -> Callable:
        if name in COMMANDS:
            raise ValueError(f"duplicate atelier subcommand {name!r}")

        def bind(run: Callable) -> Callable:
            COMMANDS[name] = (help, add_arguments, run)
            return run

        add_arguments.run = bind
        return add_arguments

    return register


class Report(dict):
    """The JSON report every subcommand writes with --report: command, seconds, device, renderer, figures."""

    def write(self, path: str | None) -> None:
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(json.dumps(self, indent=2, sort_keys=True, default=str) + "\n")


def progress_bar(total: int, desc: str, unit: str = "step", delay: float = 0.0):
    """A tqdm-backed `progress(step, total, **metrics)` callback and the bar to close (shown only once
    `delay` seconds have passed, so a run that fails at once prints nothing but its error line)."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr, delay=delay)

    def progress(step: int, total_: int, **metrics: float) -> None:
        bar.total = total_
        bar.n = step
        if metrics:
            bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in metrics.items()}, refresh=False)
        # tqdm's refresh() ignores `delay` and does not record the print, so close() would leave the bar on screen
        # (glued to an error line that follows): honour the delay here and record the print.
        if time.time() - bar.start_t >= delay:
            bar.refresh()
            bar.last_print_t = time.time()

    return progress, bar


def resolve(args, report: Report):
    """The torch device for this run, recorded in the report with the renderer it gets by default."""
    from backend.devices import resolve_device
    from backend.render.rasterizer import renderer_name

    device = resolve_device(args.device)
    report["device"] = str(device)
    report["renderer"] = renderer_name(device)
    return device


# ----------------------------------------------------------------------------------------- doctor
@command("doctor", "what is installed, which device and renderer would run, which weights are present")
def _doctor_args(parser: argparse.ArgumentParser) -> None:
    pass


@_doctor_args.run
def _doctor(args, report: Report) -> None:
    import torch

    from backend import external
    from backend.models.store import list_models

    device = resolve(args, report)
    facts = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "nvdiffrast": external.HAS_NVDIFFRAST,
    }
    for package in ("open_clip", "trimesh", "zmq", "faiss"):
        try:
            module = __import__(package)
            facts[package] = getattr(module, "__version__", "installed")
        except ImportError:
            facts[package] = None
    models = list_models()
    report.update(facts)
    report["models"] = models
    width = max(len(k) for k in facts)
    for key, value in {**facts, "device": str(device), "renderer": report["renderer"]}.items():
        print(f"{key:<{width}}  {value}")
    print("weights:")
    for m in models:
        print(f"  {'present' if m['present'] else 'missing':<8} {m['name']:<22} {m.get('size_human', '')}")


# ------------------------------------------------------------------------------------------ serve
@command("serve", "run the backend server")
def _serve_args(parser: argparse.ArgumentParser) -> None:
    from backend.server.config import ServerConfig

    defaults = ServerConfig()
    parser.add_argument("--bind", default=defaults.bind,
                        help="ZeroMQ endpoint; tcp://127.0.0.1:* picks a free port (announced on the ready line)")
    parser.add_argument("--curve-dir", default=None,
                        help="folder made by `atelier keys`: encrypt, and serve only its authorised client keys")
    parser.add_argument("--log", default=None, help="log file (default: a file under the temp dir)")
    parser.add_argument("--log-level", default=defaults.log_level, help="DEBUG | INFO | WARNING | ERROR")
    parser.add_argument("--max-blob-bytes", type=int, default=defaults.max_blob_bytes, help="largest blob frame accepted")
    parser.add_argument("--max-queue", type=int, default=defaults.max_queue, help="jobs waiting before submit is refused")
    parser.add_argument("--test-jobs", action="store_true", help="also offer the echo, sleep and fail job kinds")
    parser.add_argument("--watch-pid", type=int, default=None,
                        help="stop when this process is gone (the add-on passes Blender's pid)")


@_serve_args.run
def _serve(args, report: Report) -> None:
    from backend.server.app import serve
    from backend.server.config import ServerConfig

    config = ServerConfig(bind=args.bind, device=args.device, curve_dir=args.curve_dir, log_path=args.log,
                          log_level=args.log_level, max_blob_bytes=args.max_blob_bytes, max_queue=args.max_queue,
                          test_jobs=args.test_jobs, watch_pid=args.watch_pid)
    report["exit_code"] = serve(config)


# ----------------------------------------------------------------------------------------- render
@command("render", "shaded views of a mesh as PNGs (the renderer, end to end)")
def _render_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mesh", help="obj, ply, stl, off, glb or gltf file")
    parser.add_argument("--views", type=int, default=8, help="number of views around the mesh")
    parser.add_argument("--size", type=int, default=256, help="image size in pixels")
    parser.add_argument("--out", required=True, help="output folder for view_NNN.png")
    parser.add_argument("--renderer", choices=("auto", "nvdiffrast", "torch"), default="auto")


@_render_args.run
def _render(args, report: Report) -> None:
    from PIL import Image

    from backend.errors import InvalidInputError
    from backend.geometry.load import load_mesh
    from backend.geometry.validate import validate_mesh
    from backend.render.rasterizer import RasterizerConfig
    from backend.render.renderer import RenderConfig
    from backend.render.turntable import render_turntable

    if not 1 <= args.views <= 360:
        raise InvalidInputError(f"--views must be between 1 and 360, got {args.views}")
    if not 16 <= args.size <= 4096:
        raise InvalidInputError(f"--size must be between 16 and 4096 pixels, got {args.size}")
    device = resolve(args, report)
    mesh = validate_mesh(load_mesh(args.mesh))
    config = RenderConfig(rasterizer=RasterizerConfig(implementation=args.renderer))
    progress, bar = progress_bar(args.views, "render")
    start = time.perf_counter()
    images = render_turntable(mesh, views=args.views, size=args.size, device=device, progress=progress, config=config)
    bar.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = out / f"view_{i:03d}.png"
        Image.fromarray(image).save(path)
        paths.append(str(path))
    from backend.render.rasterizer import renderer_name

    report.update(renderer=renderer_name(device, args.renderer), views=args.views, size=args.size,
                  faces=mesh.num_faces, vertices=mesh.num_vertices, images=paths,
                  seconds_per_view=(time.perf_counter() - start) / args.views)
    print(f"wrote {len(paths)} views to {out}")


# ---------------------------------------------------------------------------------------- stylize
STYLIZE_DEFAULT_CLIP = "ViT-B-32:openai"
"""The CLIP `atelier stylize` uses without --clip (the paper's)."""


@command("stylize", "Text2Mesh: colour and displace a mesh from a text prompt, written as GLB with a shape key")
def _stylize_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mesh", help="obj, ply, stl, off, glb or gltf file")
    parser.add_argument("--prompt", required=True, help="the style, e.g. 'a chair made of red brick'")
    parser.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the quality preset's)")
    parser.add_argument("--out", required=True, help="output .glb (vertex colours + shape key 'Text2Mesh')")
    parser.add_argument("--quality", choices=("draft", "standard", "high"), default="standard",
                        help="draft: 150 steps, 3 views, half-width network; standard: 500 steps; "
                             "high: the paper (1500 steps)")
    parser.add_argument("--subdivide", action="store_true", help="subdivide sparse meshes (< 10k vertices) first")
    parser.add_argument("--bake-texture", action="store_true", help="also paint the colours into a UV texture")
    parser.add_argument("--texture-size", type=int, default=1024, help="baked texture side in pixels")
    parser.add_argument("--renderer", choices=("auto", "nvdiffrast", "torch"), default="auto")


@_stylize_args.run
def _stylize(args, report: Report) -> None:
    from backend.errors import InvalidInputError
    from backend.geometry.load import load_mesh
    from backend.models.clip import load_clip
    from backend.render.rasterizer import renderer_name
    from backend.stylize.losses import check_prompt
    from backend.stylize.output import export_stylized_glb
    from backend.stylize.text2mesh import preset, stylize

    check_prompt(args.prompt)
    if not 64 <= args.texture_size <= 4096:
        raise InvalidInputError(f"--texture-size must be between 64 and 4096 pixels, got {args.texture_size}")
    config = preset(args.quality, steps=args.steps, seed=args.seed, subdivide=args.subdivide, renderer=args.renderer)
    config.check()  # bad --steps fails before the model loads
    device = resolve(args, report)
    report["renderer"] = renderer_name(device, args.renderer)
    mesh = load_mesh(args.mesh)
    clip = load_clip(args.clip or STYLIZE_DEFAULT_CLIP, device, allow_download=args.allow_download)
    progress, bar = progress_bar(config.steps, "stylize")
    try:
        result = stylize(mesh, args.prompt, clip, config, device=device, progress=progress)
    finally:
        bar.close()
    export_stylized_glb(result, args.out, bake_texture=args.bake_texture, texture_size=args.texture_size)
    report.update(loss_first=result.losses[0], loss_last=result.losses[-1], steps=result.steps,
                  seconds_per_step=result.seconds / result.steps, quality=args.quality, clip=clip.spec,
                  prompt=result.prompt, vertices=result.mesh.num_vertices, faces=result.mesh.num_faces,
                  subdivided=result.subdivision_levels > 0, out=str(args.out))
    print(f"wrote {args.out} (loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f} in {result.steps} steps)")


# ---------------------------------------------------------------------------------------- restyle
RESTYLE_DEFAULT_CLIP = "RN50:openai"
"""The CLIP whose image-tower features `atelier restyle` matches without --clip (the paper's)."""


@command("restyle", "restyle a mesh's texture after style images (CLIP nearest-neighbour feature matching)")
def _restyle_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mesh", help="obj, ply, stl, off, glb or gltf file (unwrapped automatically without UVs)")
    parser.add_argument("--style", nargs="+", required=True, metavar="IMG", help="1-16 style images")
    parser.add_argument("--palette", default="auto",
                        help="'auto' (k-means colours of the style images), 'none', or '#rrggbb,#rrggbb,...'")
    parser.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the quality preset's)")
    parser.add_argument("--out", required=True, help="output .glb (its _style.png, the style texture alone, beside it)")
    parser.add_argument("--quality", choices=("draft", "standard", "high"), default="standard",
                        help="draft: 150 steps of 2 views at 256 px; standard: 400 of 4 at 384 px; "
                             "high: the paper (1000 of 8 at 512 px)")
    parser.add_argument("--palette-weight", type=float, default=None,
                        help="the palette loss weight at the first step (default 2000, the paper's); raise it when "
                             "colours drift from the palette")
    parser.add_argument("--pattern-scale", type=float, default=1.0,
                        help="camera distance in mesh sizes: smaller gives finer patterns (default 1)")
    parser.add_argument("--texture-size", type=int, default=None, help="style texture side in pixels")
    parser.add_argument("--features", choices=("clip", "vgg16"), default="clip",
                        help="the feature network: the CLIP image tower (--clip) or VGG-16 (ImageNet weights)")
    parser.add_argument("--renderer", choices=("auto", "nvdiffrast", "torch"), default="auto")


@_restyle_args.run
def _restyle(args, report: Report) -> None:
    from backend.geometry.load import load_mesh
    from backend.images import load_image
    from backend.models.clip import load_clip
    from backend.render.rasterizer import renderer_name
    from backend.stylize.features import FeatureConfig
    from backend.stylize.output import export_restyled, style_path
    from backend.stylize.palette import parse_palette, to_hex
    from backend.stylize.restyle import preset, restyle

    use_palette = args.palette.strip().lower() != "none"
    palette = parse_palette(args.palette) if use_palette else None
    config = preset(args.quality, steps=args.steps, seed=args.seed, pattern_scale=args.pattern_scale,
                    texture_size=args.texture_size, renderer=args.renderer, palette_weight=args.palette_weight,
                    features=FeatureConfig(extractor=args.features))
    config.check()  # bad settings fail before anything loads
    styles = [load_image(path, what="style image") for path in args.style]
    device = resolve(args, report)
    report["renderer"] = renderer_name(device, args.renderer)
    mesh = load_mesh(args.mesh)
    clip = None
    if args.features == "clip":
        clip = load_clip(args.clip or RESTYLE_DEFAULT_CLIP, device, allow_download=args.allow_download)
    progress, bar = progress_bar(config.steps, "restyle")
    try:
        result = restyle(mesh, styles, clip, config, palette=palette, use_palette=use_palette, device=device,
                         progress=progress)
    finally:
        bar.close()
    if result.unwrapped:
        print("the mesh had no UVs: it was unwrapped automatically (xatlas)", file=sys.stderr)
    export_restyled(result, args.out)
    report.update(loss_first=result.losses[0], loss_last=result.losses[-1], steps=result.steps,
                  loss_style_first=result.metrics_first["loss_style"],
                  loss_style_last=result.metrics_last["loss_style"],
                  seconds_per_step=result.seconds / result.steps, quality=args.quality,
                  clip=clip.spec if clip else None, extractor=result.extractor, styles=len(styles),
                  palette=[] if result.palette is None else to_hex(result.palette),
                  palette_source=result.palette_source, neighbour_share=result.neighbour_share,
                  unwrapped=result.unwrapped, base_source=result.base_source, out=str(args.out),
                  style_texture=str(style_path(args.out)))
    print(f"wrote {args.out} and {style_path(args.out)} "
          f"(loss {result.losses[0]:.4g} -> {result.losses[-1]:.4g} in {result.steps} steps)")


# ------------------------------------------------------------------------------------------ world
@command("world", "write a procedural library and dataset (meshes, categories, captions, views, sketches, photos)")
def _world_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="output folder")
    parser.add_argument("--shapes", type=int, default=48, help="number of shapes")
    parser.add_argument("--size", type=int, default=128, help="image size in pixels")
    parser.add_argument("--views", type=int, default=4, help="views (and sketches) per shape")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset in DIR")


@_world_args.run
def _world(args, report: Report) -> None:
    from backend.world.dataset import world_command

    device = resolve(args, report)
    progress, bar = progress_bar(args.shapes, "world")
    figures = world_command(args.dir, args.shapes, seed=args.seed, size=args.size, views=args.views,
                            progress=progress, device=device, overwrite=args.overwrite)
    bar.close()
    report.update(figures)
    print(f"wrote {figures['shapes']} shapes to {args.dir} (library: {figures['library']})")


# -------------------------------------------------------------------------------- train-retrieval
RETRIEVAL_DEFAULT_CLIP = "domain"
"""The CLIP `atelier train-retrieval` and `eval-retrieval --zero-shot` start from without --clip."""


@command("train-retrieval", "train TASK-former (sketch + text -> shape retrieval) on a world dataset's train split")
def _train_retrieval_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="world dataset folder (`atelier world DIR --shapes N`)")
    parser.add_argument("--out", required=True, help="TASK-former checkpoint to write (.pt)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default 240)")
    parser.add_argument("--batch", type=int, default=None, help="shapes per step (default 64)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate of the CLIP layers (default 1e-4)")
    parser.add_argument("--train-layers", type=int, default=None,
                        help="last blocks of each CLIP tower to train (default 1; 0: projections only; -1: all)")
    parser.add_argument("--hard-negative", action="store_true",
                        help="embedding loss: the hard-negative contrastive loss (Robinson et al. 2021)")
    parser.add_argument("--beta", type=float, default=None, help="hard-negative concentration (default 1)")
    parser.add_argument("--tau-plus", type=float, default=None, help="hard-negative class prior (default 0.1)")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="also write --out every N steps")
    parser.add_argument("--resume", default=None, help="continue the run saved in this checkpoint (--steps may grow)")
    parser.add_argument("--init", default=None,
                        help="start a new run from this TASK-former's weights (fine-tuning, e.g. --hard-negative)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads while training")
    parser.add_argument("--no-eval", action="store_true", help="skip the test-split Recall@K after training")


@_train_retrieval_args.run
def _train_retrieval(args, report: Report) -> None:
    from backend.errors import InvalidInputError
    from backend.models.clip import load_clip
    from backend.retrieve.data import load_split
    from backend.retrieve.evaluate import evaluate, format_table
    from backend.retrieve.train import TrainConfig, clip_spec_for, resume_config, train

    if args.resume and args.init:
        raise InvalidInputError("--resume and --init exclude each other",
                                hint="--resume continues a run; --init starts a new one from a checkpoint")
    recipe = {"batch": args.batch, "lr": args.lr, "train_layers": args.train_layers, "beta": args.beta,
              "tau_plus": args.tau_plus, "hard_negative": True if args.hard_negative else None}
    recipe = {k: v for k, v in recipe.items() if v is not None}
    run = {"steps": args.steps, "checkpoint_every": args.checkpoint_every, "threads": args.threads}
    run = {k: v for k, v in run.items() if v is not None}
    if args.resume:
        if recipe:
            raise InvalidInputError(f"a resumed run keeps its recipe; drop {', '.join(sorted(recipe))}",
                                    hint="only --steps, --checkpoint-every and --threads may change on --resume")
        config = resume_config(args.resume, **run)
    else:
        config = TrainConfig(seed=args.seed, **recipe, **run)
    source = args.resume or args.init
    spec = clip_spec_for(source, args.clip) if source else None
    data = load_split(args.data, "train")
    test = None if args.no_eval else load_split(args.data, "test")  # an empty test split fails before training
    device = resolve(args, report)
    clip = None if source else load_clip(args.clip or RETRIEVAL_DEFAULT_CLIP, device,
                                         allow_download=args.allow_download)
    progress, bar = progress_bar(config.steps, "train-retrieval")
    try:
        result = train(data, config, clip, out=args.out, resume=args.resume, init=args.init, device=device,
                       progress=progress)
    finally:
        bar.close()
    first, last = result.losses[0], result.losses[-1]
    report.update(clip=spec or clip.spec, out=str(args.out), steps=result.steps, start_step=result.start_step,
                  train_shapes=len(data), seconds_training=round(result.seconds, 3),
                  seconds_per_step=result.seconds / max(1, result.steps - result.start_step),
                  loss_first=first["loss"], loss_last=last["loss"],
                  losses_first={k: first[k] for k in ("embedding", "classification", "caption")},
                  losses_last={k: last[k] for k in ("embedding", "classification", "caption")},
                  trainable=result.trainable, parameters=result.parameters, config=result.config.to_dict())
    print(f"wrote {args.out} (loss {first['loss']:.4g} -> {last['loss']:.4g} over steps "
          f"{result.start_step}..{result.steps})")
    if test is not None:
        evaluation = evaluate(result.model, test)
        report.update(split="test", **evaluation.to_dict())
        print(format_table({"taskformer": evaluation}))


# --------------------------------------------------------------------------------- eval-retrieval
@command("eval-retrieval", "Recall@1/5/10 of sketch, text, sketch + text and photo queries on a world dataset")
def _eval_retrieval_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="world dataset folder (`atelier world DIR --shapes N`)")
    parser.add_argument("--checkpoint", default=None, help="TASK-former checkpoint (`atelier train-retrieval`)")
    parser.add_argument("--zero-shot", action="store_true",
                        help="evaluate the CLIP (--clip, default domain) itself: the baseline, no training")
    parser.add_argument("--split", choices=("test", "train", "all"), default="test",
                        help="shapes that form the gallery and the queries (default: the test split)")


@_eval_retrieval_args.run
def _eval_retrieval(args, report: Report) -> None:
    from backend.errors import InvalidInputError
    from backend.models.clip import load_clip
    from backend.retrieve.data import load_split
    from backend.retrieve.evaluate import ZeroShot, evaluate, format_table
    from backend.retrieve.taskformer import load_taskformer
    from backend.retrieve.train import clip_spec_for

    if bool(args.checkpoint) == bool(args.zero_shot):
        raise InvalidInputError("eval-retrieval needs exactly one of --checkpoint CKPT and --zero-shot",
                                hint="--checkpoint evaluates a trained TASK-former; --zero-shot the CLIP alone")
    spec = clip_spec_for(args.checkpoint, args.clip) if args.checkpoint else None
    data = load_split(args.data, args.split)
    device = resolve(args, report)
    if args.checkpoint:
        model, method = load_taskformer(args.checkpoint, device), "taskformer"
    else:
        clip = load_clip(args.clip or RETRIEVAL_DEFAULT_CLIP, device, allow_download=args.allow_download)
        model, method, spec = ZeroShot(clip), "zero-shot", clip.spec
    progress, bar = progress_bar(5, "eval-retrieval")
    try:
        evaluation = evaluate(model, data, progress=progress)
    finally:
        bar.close()
    report.update(method=method, clip=spec, checkpoint=args.checkpoint, split=args.split, **evaluation.to_dict())
    print(format_table({method: evaluation}))


# ------------------------------------------------------------------------------------------ index
@command("index", "index a folder of meshes into a shape library database (incremental, resumable)")
def _index_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("library", help="folder of obj, ply, stl, off, glb, gltf files (subfolders too)")
    parser.add_argument("--db", required=True, help="database folder (created when missing, updated when present)")
    parser.add_argument("--views", type=int, default=None,
                        help="shaded views and line drawings per shape (default 6; an existing database keeps its own)")
    parser.add_argument("--checkpoint", default=None,
                        help="a TASK-former checkpoint whose encoders embed the views (default: the CLIP's towers)")
    parser.add_argument("--rehash", action="store_true",
                        help="hash every file, also those whose size and modification time are unchanged")


@_index_args.run
def _index(args, report: Report) -> None:
    import dataclasses

    from backend.retrieve.database import LibraryDB, db_exists
    from backend.retrieve.indexer import IndexConfig, index_library
    from backend.retrieve.service import load_encoder
    from backend.retrieve.views import IndexViewConfig

    views = IndexViewConfig()
    existing = None
    if db_exists(args.db):
        with LibraryDB.open(args.db) as db:
            recorded = IndexViewConfig.from_json(db.views_json)
            existing = db.clip_spec
        views = recorded if args.views is None else dataclasses.replace(recorded, views=args.views)
    elif args.views is not None:
        views = IndexViewConfig(views=args.views)
    views.check()
    device = resolve(args, report)
    encoder = load_encoder(args.clip or existing, args.checkpoint, device, args.allow_download)
    progress, bar = progress_bar(1, "index", unit="shape", delay=0.5)
    try:
        result = index_library(args.library, args.db, encoder, IndexConfig(views=views, rehash=args.rehash),
                               progress=progress, device=device)
    finally:
        bar.close()
    figures = result.as_dict()
    report.update(figures, clip=encoder.spec, encoder=encoder.encoder_id, db=str(args.db), views=views.views)
    for path, reason in result.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{result.shapes} shapes in {args.db}: {result.indexed} indexed, {result.skipped} skipped, "
          f"{result.removed} removed, {len(result.failed)} failed ({result.shapes_per_s:.2f} shapes/s)")


# ----------------------------------------------------------------------------------------- search
@command("search", "search a shape library database by text, sketch, image, or sketch + text")
def _search_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, help="database folder made by `atelier index`")
    parser.add_argument("--text", default=None, help="a description, e.g. 'a tall red chair'")
    parser.add_argument("--sketch", default=None, help="a drawing: dark strokes on white paper, any size (PNG, JPEG)")
    parser.add_argument("--strokes", default=None,
                        help="a JSON file of stroke polylines [[[x, y], ...], ...] in [0, 1], y down (instead of --sketch)")
    parser.add_argument("--image", default=None, help="a photo or render of the object")
    parser.add_argument("--category", default=None, help="only shapes of this category")
    parser.add_argument("-k", type=int, default=10, help="number of results (1-100)")
    parser.add_argument("--checkpoint", default=None, help="the TASK-former checkpoint the database was indexed with")
    parser.add_argument("--thumbnails", default=None, metavar="DIR",
                        help="write thumbnails as DIR/<rank>_<name>.png and print their paths "
                             "(default: each thumbnail is printed as base64 PNG)")


@_search_args.run
def _search(args, report: Report) -> None:
    import base64

    from backend.errors import InvalidInputError
    from backend.retrieve.database import LibraryDB
    from backend.retrieve.search import check_k, search
    from backend.retrieve.service import load_encoder

    check_k(args.k)
    if args.sketch is not None and args.strokes is not None:
        raise InvalidInputError("give --sketch or --strokes, not both")
    sketch = args.sketch
    if args.strokes is not None:
        try:
            sketch = json.loads(Path(args.strokes).read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"cannot read the strokes file {args.strokes}: {exc}",
                                    hint="write a JSON list of polylines [[[x, y], ...], ...]") from exc
        if not isinstance(sketch, list):
            raise InvalidInputError(f"the strokes file {args.strokes} must hold a JSON list of polylines")
    device = resolve(args, report)
    with LibraryDB.open(args.db) as db:
        encoder = load_encoder(args.clip, args.checkpoint, device, args.allow_download, db=db)
        hits = search(db, encoder, text=args.text, sketch=sketch, photo=args.image, k=args.k, category=args.category)
        root = db.library_root
    out = Path(args.thumbnails) if args.thumbnails else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    results = []
    for rank, hit in enumerate(hits):
        if out is not None:
            thumb = out / f"{rank:03d}_{hit.name}.png"
            thumb.write_bytes(hit.thumbnail)
            thumbnail = str(thumb)
        else:
            thumbnail = base64.b64encode(hit.thumbnail).decode("ascii")
        results.append({"path": str(Path(root) / hit.path) if root else hit.path, "name": hit.name,
                        "score": round(hit.score, 6), "thumbnail": thumbnail, "category": hit.category,
                        "shape_id": hit.shape_id})
    report.update(results=[{k: v for k, v in r.items() if k != "thumbnail" or out is not None} for r in results],
                  clip=encoder.spec, k=args.k, db=str(args.db))
    print(json.dumps({"results": results}, indent=1))


# ---------------------------------------------------------------------------------------- segment
@command("segment", "text-guided segmentation: the object a prompt names in a photo, as a mask PNG and an RGBA "
                    "cut-out (SAM masks + text relevance, constrained-IoU merge)")
def _segment_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="the photo (PNG, JPEG, ...; any mode, 16-bit, EXIF rotation honoured)")
    parser.add_argument("--prompt", required=True, help="what to cut out, e.g. 'the red chair'")
    parser.add_argument("--out", required=True, help="the mask PNG to write (the photo's size, 255 on the object)")
    parser.add_argument("--cutout", default=None, help="also write the photo with alpha = mask as an RGBA PNG")
    parser.add_argument("--sam-checkpoint", default=None, metavar="PTH",
                        help="a SAM checkpoint file (default: the cached sam_vit_b/l/h; without any, superpixels "
                             "stand in and the report says so)")
    parser.add_argument("--sam-type", choices=("vit_b", "vit_l", "vit_h"), default=None,
                        help="the SAM architecture (default: read from the checkpoint; without a checkpoint, "
                             "this type must be in the cache: `atelier models pull sam_vit_b`)")
    parser.add_argument("--proposer", choices=("auto", "sam", "superpixels"), default="auto",
                        help="auto: SAM when weights are here, else superpixels; sam: SAM or an error")
    parser.add_argument("--relevance", choices=("auto", "clipseg", "dense-clip"), default="auto",
                        help="the text relevance map: CLIPSeg when installed and cached (auto), else dense CLIP "
                             "features of --clip (default ViT-B-16:openai)")
    parser.add_argument("--point", nargs=3, type=float, action="append", default=None, metavar=("X", "Y", "LABEL"),
                        help="a point prompt in the photo's pixels: LABEL 1 on the object, 0 not on it (repeatable)")
    parser.add_argument("--box", nargs=4, type=float, default=None, metavar=("X0", "Y0", "X1", "Y1"),
                        help="a box prompt in the photo's pixels")
    parser.add_argument("--points-per-side", type=int, default=32, help="SAM's automatic prompt grid (default 32)")
    parser.add_argument("--pred-iou-thresh", type=float, default=0.86,
                        help="SAM drops masks whose own predicted IoU is not above this (default 0.86; 0 keeps all)")
    parser.add_argument("--stability-thresh", type=float, default=0.92,
                        help="SAM drops masks less stable than this (default 0.92; 0 keeps all)")
    parser.add_argument("--relevance-threshold", type=float, default=0.5,
                        help="the relevance region is where the map reaches this fraction of its maximum (0.5)")
    parser.add_argument("--iou-threshold", type=float, default=0.5,
                        help="masks with |S ∩ R| / |S| above this are merged (0.5, the seed's)")
    parser.add_argument("--max-side", type=int, default=1024, help="the models' working size (longer side, px)")


@_segment_args.run
def _segment(args, report: Report) -> None:
    from backend.images import load_image
    from backend.models.clip import load_clip
    from backend.segment.merge import MergeConfig
    from backend.segment.relevance import RelevanceConfig
    from backend.segment.sam import SamConfig
    from backend.segment.segment import (
        DEFAULT_CLIP, SegmentConfig, check_prompt, encode_mask_png, encode_rgba_png, segment,
    )

    prompt = check_prompt(args.prompt)
    config = SegmentConfig(
        proposer=args.proposer, relevance=RelevanceConfig(method=args.relevance), max_side=args.max_side,
        sam=SamConfig(checkpoint=args.sam_checkpoint, sam_type=args.sam_type, points_per_side=args.points_per_side,
                      pred_iou_thresh=args.pred_iou_thresh, stability_score_thresh=args.stability_thresh),
        merge=MergeConfig(relevance_threshold=args.relevance_threshold, iou_threshold=args.iou_threshold))
    config.check()  # bad settings fail before anything loads
    outputs = [Path(args.out)] + ([Path(args.cutout)] if args.cutout else [])
    for path in outputs:
        if path.is_dir():
            raise AtelierError(f"{path} is a folder", hint="give a file name ending in .png")
    method = config.relevance_method()
    image = load_image(args.image, what="photo", keep_alpha=True)
    device = resolve(args, report)
    clip = load_clip(args.clip or DEFAULT_CLIP, device, allow_download=args.allow_download) \
        if method == "dense-clip" else None
    progress, bar = progress_bar(1, "segment", delay=0.5)
    try:
        result = segment(image, prompt, clip, config, points=args.point, box=args.box, progress=progress,
                         device=device)
    finally:
        bar.close()
    if result.note:
        print(result.note, file=sys.stderr)
    for path, data in ((outputs[0], encode_mask_png(result.mask)),
                       *(((outputs[1], encode_rgba_png(result.cutout)),) if args.cutout else ())):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    height, width = result.mask.shape
    report.update(method=result.method, iou_merge=result.iou_merge, proposals=result.proposals,
                  proposer=result.proposer, relevance=result.relevance_method, fallback=result.fallback,
                  note=result.note, rule=result.rule, area=round(result.area, 6), width=width, height=height,
                  work_size=list(result.work_size), clip=clip.spec if clip is not None else None,
                  sam_checkpoint=result.sam_checkpoint, stage_seconds=result.seconds, out=str(outputs[0]),
                  cutout=str(outputs[1]) if args.cutout else None)
    print(f"wrote {outputs[0]}" + (f" and {outputs[1]}" if args.cutout else "")
          + f" ({width}x{height}, {100 * result.area:.1f}% of the photo; {result.method}, "
            f"{len(result.iou_merge)} of {result.proposals} proposals merged)")


# ------------------------------------------------------------------------------------ photo-to-3d
@command("photo-to-3d", "segment the object a prompt names in a photo, find it in a shape library and restyle the "
                        "best match's texture after the photo")
def _photo_to_3d_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="the photo (PNG, JPEG, ...; any mode, 16-bit, EXIF rotation honoured)")
    parser.add_argument("--prompt", required=True, help="what to look for in the photo, e.g. 'the red chair'")
    parser.add_argument("--db", required=True, help="a library database made by `atelier index` (its CLIP is used)")
    parser.add_argument("--out", required=True, help="output .glb (its _style.png, the style texture alone, beside it)")
    parser.add_argument("-k", type=int, default=5, help="shapes retrieved (listed in the report; default 5)")
    parser.add_argument("--pick", type=int, default=0, help="which of the k to restyle (0: the best match)")
    parser.add_argument("--category", default=None, help="only retrieve shapes of this category")
    parser.add_argument("--quality", choices=("draft", "standard", "high"), default="draft",
                        help="the restyle preset (default draft)")
    parser.add_argument("--steps", type=int, default=None, help="restyle steps (default: the preset's)")
    parser.add_argument("--cutout", default=None, help="also write the segmented object as an RGBA PNG")
    parser.add_argument("--sam-checkpoint", default=None, metavar="PTH",
                        help="a SAM checkpoint (default: a cached one; without any, superpixels stand in)")
    parser.add_argument("--sam-type", choices=("vit_b", "vit_l", "vit_h"), default=None)
    parser.add_argument("--proposer", choices=("auto", "sam", "superpixels"), default="auto")


@_photo_to_3d_args.run
def _photo_to_3d(args, report: Report) -> None:
    from backend.images import load_image
    from backend.retrieve.service import load_encoder, open_cached
    from backend.segment.photo_to_3d import PhotoTo3DConfig, photo_to_3d
    from backend.segment.sam import SamConfig
    from backend.segment.segment import SegmentConfig, check_prompt, encode_rgba_png, segment
    from backend.stylize.output import export_restyled, style_path
    from backend.stylize.restyle import preset

    prompt = check_prompt(args.prompt)
    seg_config = SegmentConfig(proposer=args.proposer,
                               sam=SamConfig(checkpoint=args.sam_checkpoint, sam_type=args.sam_type))
    seg_config.check()
    restyle_config = preset(args.quality, steps=args.steps, seed=args.seed)
    restyle_config.check()
    config = PhotoTo3DConfig(k=args.k, pick=args.pick, category=args.category, restyle=restyle_config)
    image = load_image(args.image, what="photo", keep_alpha=True)
    device = resolve(args, report)
    db = open_cached(args.db)
    encoder = load_encoder(clip=args.clip, db=db, device=device, allow_download=args.allow_download)
    seg = segment(image, prompt, encoder.clip, seg_config, device=device)
    if seg.note:
        print(seg.note, file=sys.stderr)
    progress, bar = progress_bar(restyle_config.steps, "restyle")
    try:
        result = photo_to_3d(image, seg.mask, db, encoder, encoder.clip, config, device=device, progress=progress)
    finally:
        bar.close()
    export_restyled(result.restyled, args.out, name=result.chosen.name)
    if args.cutout:
        Path(args.cutout).write_bytes(encode_rgba_png(seg.cutout))
    restyled = result.restyled
    report.update(method=seg.method, proposals=seg.proposals, iou_merge=seg.iou_merge, rule=seg.rule,
                  hits=[h.as_dict() for h in result.hits], chosen=result.chosen.as_dict(),
                  category=result.chosen.category, clip=encoder.spec, loss_first=restyled.losses[0],
                  loss_last=restyled.losses[-1], steps=restyled.steps, out=str(args.out),
                  style_texture=str(style_path(args.out)))
    print(f"wrote {args.out}: {result.chosen.name} ({result.chosen.category or 'no category'}, score "
          f"{result.chosen.score:.3f}) restyled after the photo (loss {restyled.losses[0]:.4g} -> "
          f"{restyled.losses[-1]:.4g}); segmented with {seg.method}")


# --------------------------------------------------------------------------------------- generate
def staged_progress_bars():
    """A `progress(step, total, stage=..., **metrics)` callback showing one bar per stage, and a close()."""
    current: dict = {}

    def progress(step: int, total: int, stage: str = "", **metrics) -> None:
        if current.get("stage") != stage:
            if "bar" in current:
                current["bar"].close()
            current["progress"], current["bar"] = progress_bar(total, stage or "run")
            current["stage"] = stage
        current["progress"](step, total, **{k: v for k, v in metrics.items() if isinstance(v, (int, float))})

    def close() -> None:
        if "bar" in current:
            current["bar"].close()

    return progress, close


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
    parser.add_argument("--width", type=int, default=256, help="decoder width; the flow's coupling nets are 2x this")
    parser.add_argument("--encoder-channels", type=int, default=32,
                        help="channels of the voxel encoder's first conv (they double per halving; 8 is ~10x faster on a CPU)")
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

    for name in ("ae_steps", "flow_steps", "batch", "points", "views", "latent", "width", "encoder_channels"):
        if getattr(args, name) < 1:
            raise InvalidInputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.batch < 2:
        raise InvalidInputError(f"--batch must be >= 2 (the flow's batch-norm), got {args.batch}")
    try:
        config = GeneratorTrainConfig(
            autoencoder=OccupancyAutoencoderConfig(latent_dim=args.latent, decoder_hidden=args.width,
                                                   encoder_channels=args.encoder_channels),
            autoencoder_training=AutoencoderTrainConfig(steps=args.ae_steps, batch_size=args.batch,
                                                        points_per_shape=args.points, seed=args.seed),
            flow=FlowConfig(hidden=2 * args.width),
            flow_training=FlowTrainConfig(steps=args.flow_steps, batch_size=args.batch, seed=args.seed),
            views=args.views, max_shapes=args.max_shapes, index_db=args.db)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from exc
    device = resolve(args, report)
    clip = load_clip(args.clip or "domain", device, allow_download=args.allow_download)
    progress, close = staged_progress_bars()
    try:
        result = train_generator(args.library, args.out, clip, config, epochs=args.epochs, resume=args.resume,
                                 device=device, progress=progress)
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
    parser.add_argument("--checkpoint", required=True, help="a generator from `atelier train-generator`")
    parser.add_argument("--out", required=True, help="output .glb; with --samples N > 1: OUT_0.glb ... OUT_{N-1}.glb")
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
    parser.add_argument("--temperature", type=float, default=0.8, help="flow sampling temperature")


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
    generator = load_generator(args.checkpoint, device)
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
    before = [s.clip_score_before for s in shapes]
    after = [s.clip_score_after for s in shapes]
    report.update(samples=len(shapes), prompt=prompt, image=args.image, style=style, clip=clip.spec, outputs=[str(p) for p in paths],
                  clip_score_before=sum(before) / len(before), clip_score_after=sum(after) / len(after),
                  clip_scores_before=before, clip_scores_after=after, refine_steps=args.refine,
                  vertices=[s.mesh.num_vertices for s in shapes], faces=[s.mesh.num_faces for s in shapes],
                  seconds_per_shape=[round(s.seconds, 3) for s in shapes],
                  style_loss_last=[r.losses[-1] for r in styled] if styled else None)
    for shape, path in zip(shapes, paths):
        print(f"wrote {path}: {shape.mesh.num_faces} faces, CLIP score {shape.clip_score_before:.3f}"
              + (f" -> {shape.clip_score_after:.3f}" if args.refine else ""))


# ----------------------------------------------------------------------------------------- models
@command("models", "the weights manager: list what is present, pull (download) or import a local file")
def _models_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("list", "pull", "import"))
    parser.add_argument("name", nargs="?", help="a weights name from `atelier models list` (pull, import)")
    parser.add_argument("path", nargs="?", help="the local file to import (import)")


@_models_args.run
def _models(args, report: Report) -> None:
    from backend.errors import InvalidInputError
    from backend.models import store

    if args.action == "list":
        models = store.list_models()
        report["models"] = models
        for m in models:
            print(f"{'present' if m['present'] else 'missing':<8} {m['name']:<22} {m.get('size_human', ''):>9}  "
                  f"{m.get('licence', '')}  {m.get('path') or ''}")
        return
    if not args.name:
        raise InvalidInputError(f"`atelier models {args.action}` needs a weights name", hint="see `atelier models list`")
    if args.action == "pull":
        report["path"] = str(store.pull(args.name))
    else:
        if not args.path:
            raise InvalidInputError("`atelier models import NAME PATH` needs the path of the local file")
        report["path"] = str(store.import_file(args.name, args.path))
    print(report["path"])


# ------------------------------------------------------------------------------------------- keys
@command("keys", "make CurveZMQ server and client key pairs for a remote backend")
def _keys_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="folder to write the keys into")


@_keys_args.run
def _keys(args, report: Report) -> None:
    from backend.server.curve import make_keys

    paths = make_keys(Path(args.dir))
    report["keys"] = {k: str(v) for k, v in paths.items()}
    for key, path in paths.items():
        print(f"{key:<16} {path}")


# ------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    common.add_argument("--clip", default=None,
                        help="CLIP spec: MODEL:TAG (e.g. ViT-B-32:openai), a local checkpoint path, tiny, tiny-rn or domain")
    common.add_argument("--seed", type=int, default=0, help="random seed")
    common.add_argument("--report", default=None, help="write a JSON report to this file")
    common.add_argument("--allow-download", action="store_true", help="let model weights download when missing")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    parser = argparse.ArgumentParser(prog="atelier", description="Atelier backend and tools")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, parents=[common], description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    report = Report(command=args.command)
    start = time.perf_counter()
    try:
        import torch

        torch.manual_seed(args.seed)
        report.setdefault("renderer", None)
        COMMANDS[args.command][2](args, report)
    except (AtelierError, ValueError, FileNotFoundError) as exc:
        if args.debug:
            raise
        message = str(exc) if not isinstance(exc, AtelierError) else exc.message + (f" — {exc.hint}" if exc.hint else "")
        print(f"atelier {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except (KeyboardInterrupt, JobCancelled):
        print(f"atelier {args.command}: cancelled", file=sys.stderr)
        return 130
    report["seconds"] = round(time.perf_counter() - start, 4)
    report.setdefault("device", args.device)
    report.write(args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
