"""`atelier train-retrieval`, `eval-retrieval`, `index` and `search`: the shape library and TASK-former."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from backend.cli.common import Report, command, progress_bar, resolve
from shared_protocol import limits


# -------------------------------------------------------------------------------- train-retrieval
LOSS_PARTS = ("embedding", "classification", "caption", "photo", "lines")
"""The loss parts a train-retrieval report shows at the first and last step (photo, lines: when trained)."""
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
    parser.add_argument("--photo-weight", type=float, default=None,
                        help="weight of the photo term: the train split's photos, cut out by saliency and by their "
                             "prompt as `search --image` cuts them, contrasted with their shapes' views (default 0; 0 "
                             "trains without photos)")
    parser.add_argument("--extra-photos", type=int, default=None,
                        help="with --photo-weight: new world photos per train shape, cut the same way (default 0)")
    parser.add_argument("--lines-weight", type=float, default=None,
                        help="weight of the lines term: each sketch against the index's line drawings of its shape, "
                             "as a search scores a sketch (default 3; 0 leaves it out)")
    parser.add_argument("--extra-sketches", type=int, default=None,
                        help="more sketches per train shape drawn from new viewpoints (default 12; 0: the dataset's only)")
    parser.add_argument("--no-sketch-augment", action="store_true",
                        help="no stroke augmentation (width, erased patches, warp) of the training sketches")
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
    from backend.retrieve.sketch_domain import cached_index_lines
    from backend.retrieve.train import TrainConfig, clip_spec_for, resume_config, train

    if args.resume and args.init:
        raise InvalidInputError("--resume and --init exclude each other",
                                hint="--resume continues a run; --init starts a new one from a checkpoint")
    recipe = {"batch": args.batch, "lr": args.lr, "train_layers": args.train_layers, "beta": args.beta,
              "tau_plus": args.tau_plus, "hard_negative": True if args.hard_negative else None,
              "photo_weight": args.photo_weight, "lines_weight": args.lines_weight,
              "extra_sketches": args.extra_sketches, "extra_photos": args.extra_photos, "sketch_augment": False if args.no_sketch_augment else None}
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
                  losses_first={k: first[k] for k in LOSS_PARTS if k in first},
                  losses_last={k: last[k] for k in LOSS_PARTS if k in last},
                  trainable=result.trainable, parameters=result.parameters, config=result.config.to_dict())
    print(f"wrote {args.out} (loss {first['loss']:.4g} -> {last['loss']:.4g} over steps "
          f"{result.start_step}..{result.steps})")
    if test is not None:
        evaluation = evaluate(result.model, test, index_lines=cached_index_lines(test))
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
    from backend.retrieve.sketch_domain import cached_index_lines
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
        evaluation = evaluate(model, data, progress=progress, index_lines=cached_index_lines(data))
    finally:
        bar.close()
    report.update(method=method, clip=spec, checkpoint=args.checkpoint, split=args.split, **evaluation.to_dict())
    print(format_table({method: evaluation}))


# ------------------------------------------------------------------------------------------ index
@command("index", "index a folder of meshes or a Blender asset library into a shape library database "
                  "(incremental, resumable)")
def _index_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("library", help="folder of .blend, fbx, usd/usda/usdc/usdz, abc, obj, ply, stl, off, glb, gltf "
                                        "files (subfolders too), e.g. an asset library")
    parser.add_argument("--db", required=True, help="database folder (created when missing, updated when present); "
                                                    "with --store milvus a Milvus Lite file (.db) or a server URL")
    parser.add_argument("--store", choices=limits.STORES, default="embedded",
                        help="embedded: SQLite + FAISS in the --db folder (default); milvus: a Milvus Lite file or "
                             "server (http://host:19530; token in $ATELIER_MILVUS_TOKEN)")
    parser.add_argument("--views", type=int, default=None,
                        help="shaded views and line drawings per shape (default 6; an existing database keeps its own)")
    parser.add_argument("--checkpoint", default=None,
                        help="a TASK-former checkpoint whose encoders embed the views (default: the CLIP's towers)")
    parser.add_argument("--descriptor", choices=limits.DESCRIPTORS, default=None,
                        help="what describes each shape: views (rendered views and line drawings, 12 vectors a "
                             "shape), points (one point-cloud vector a shape, nothing rendered but the thumbnail) or "
                             "both (scores fused); default views, an existing database keeps its own")
    parser.add_argument("--points-encoder", default=None, metavar="PATH",
                        help="the point encoder checkpoint for --descriptor points/both (default: the one shipped "
                             "for the CLIP, or the one the database was indexed with)")
    parser.add_argument("--rehash", action="store_true",
                        help="hash every file, also those whose size and modification time are unchanged")
    parser.add_argument("--blender", default=None, metavar="PATH",
                        help="the Blender that reads .blend, FBX, USD and Alembic files: its executable, or a Python "
                             "with the bpy module (default: $ATELIER_BLENDER, .venv-blender, `blender` on PATH)")
    parser.add_argument("--workers", type=int, default=0,
                        help="Blender worker processes extracting files in parallel (default: one per CPU core)")
    parser.add_argument("--blend-objects", choices=("assets", "all"), default="assets",
                        help="a .blend's entries: its objects and collections marked as assets (default), or also "
                             "every other mesh object")
    parser.add_argument("--file-timeout", type=float, default=300.0, metavar="S",
                        help="seconds a Blender worker may spend on one file before it is replaced (default 300)")
    parser.add_argument("--ray", default=None, metavar="auto|HOST:PORT",
                        help="index the loose meshes on a Ray cluster: auto (RAY_ADDRESS, else this machine's "
                             "`ray start` cluster) or the head's address; needs pip install 'atelier[ray]'")


@_index_args.run
def _index(args, report: Report) -> None:
    from backend.retrieve.indexer import IndexConfig, index_library
    from backend.retrieve.service import index_settings, load_encoder

    settings = index_settings(args.db, args.store, args.views, args.descriptor, args.points_encoder)
    views = settings.views
    if args.workers < 0 or args.file_timeout <= 0:
        from backend.errors import InvalidInputError

        raise InvalidInputError("--workers must be >= 0 and --file-timeout > 0",
                                hint="--workers 0 uses one Blender worker per CPU core")
    device = resolve(args, report)
    encoder = load_encoder(args.clip or settings.clip, args.checkpoint, device, args.allow_download,
                           descriptor=settings.descriptor, points_encoder=settings.points_encoder)
    progress, bar = progress_bar(1, "index", unit="file", delay=0.5)
    try:
        config = IndexConfig(views=views, rehash=args.rehash, blender=args.blender, workers=args.workers,
                             blend_objects=args.blend_objects, file_timeout_s=args.file_timeout, store=args.store,
                             ray=args.ray)
        result = index_library(args.library, args.db, encoder, config, progress=progress, device=device)
    finally:
        bar.close()
    figures = result.as_dict()
    report.update(figures, clip=encoder.spec, encoder=encoder.encoder_id, db=str(args.db), views=views.views,
                  descriptor=encoder.descriptor, points_encoder=encoder.points_encoder_id)
    for path, reason in result.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{result.shapes} shapes in {args.db}: {result.indexed} indexed, {result.skipped} skipped, "
          f"{result.removed} removed, {len(result.failed)} failed ({result.shapes_per_s:.2f} shapes/s)")


# ----------------------------------------------------------------------------------------- search
@command("search", "search a shape library database by text, sketch, image, or sketch + text")
def _search_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, help="database folder made by `atelier index` (with --store milvus: the "
                                                    "Milvus Lite file or server URL)")
    parser.add_argument("--store", choices=limits.STORES, default="embedded",
                        help="where the library lives (as given to `atelier index`)")
    parser.add_argument("--text", default=None, help="a description, e.g. 'a tall red chair'")
    parser.add_argument("--sketch", default=None, help="a drawing: dark strokes on white paper, any size (PNG, JPEG)")
    parser.add_argument("--strokes", default=None,
                        help="a JSON file of stroke polylines [[[x, y], ...], ...] in [0, 1], y down (instead of --sketch)")
    parser.add_argument("--image", default=None,
                        help="a photo or render of the object: its object is found (--prompt, else saliency) and "
                             "cut out on white before it is embedded")
    parser.add_argument("--prompt", default=None,
                        help="with --image: what to cut out of the photo, e.g. 'the red chair' (default: the object "
                             "that stands out from the background)")
    parser.add_argument("--raw-photo", action="store_true",
                        help="with --image: embed the whole photo, not cut out")
    parser.add_argument("--category", default=None, help="only shapes of this category")
    parser.add_argument("--catalog", default=None,
                        help="only assets of this Blender asset catalog or below it, e.g. 'Furniture/Chairs'")
    parser.add_argument("--tag", default=None, help="only assets with this tag")
    parser.add_argument("--format", default=None, help="only entries from files of this format (blend, fbx, obj, ...)")
    parser.add_argument("--keyword-weight", type=float, default=None,
                        help="what a full match of the text's words in an asset's name adds to the CLIP score "
                             "(default 0.5; 0: CLIP alone)")
    parser.add_argument("-k", type=int, default=10, help="number of results (1-100)")
    parser.add_argument("--checkpoint", default=None, help="the TASK-former checkpoint the database was indexed with")
    parser.add_argument("--thumbnails", default=None, metavar="DIR",
                        help="write thumbnails as DIR/<rank>_<name>.png and print their paths "
                             "(default: each thumbnail is printed as base64 PNG)")


@_search_args.run
def _search(args, report: Report) -> None:
    import base64

    from backend.errors import InvalidInputError
    from backend.retrieve.search import check_k, search, search_photo
    from backend.retrieve.stores import open_store
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
    if args.image is None and (args.prompt is not None or args.raw_photo):
        raise InvalidInputError(f"{'--prompt' if args.prompt is not None else '--raw-photo'} applies to a photo query",
                                hint="give the photo with --image")
    device = resolve(args, report)
    with open_store(args.db, args.store) as db:
        encoder = load_encoder(args.clip, args.checkpoint, device, args.allow_download, db=db)
        weight = {} if args.keyword_weight is None else {"keyword_weight": args.keyword_weight}
        filters = dict(category=args.category, catalog=args.catalog, tag=args.tag, format=args.format, **weight)
        cut = None
        if args.image is not None and args.text is None and sketch is None:
            hits, cut = search_photo(db, encoder, args.image, prompt=args.prompt, raw=args.raw_photo, k=args.k,
                                     device=device, **filters)
        else:  # a mixed query: `search` names what is wrong with it
            hits = search(db, encoder, text=args.text, sketch=sketch, photo=args.image, k=args.k, **filters)
        root = db.library_root
    out = Path(args.thumbnails) if args.thumbnails else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    results = []
    for rank, hit in enumerate(hits):
        if out is not None:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in hit.name)[:80]
            thumb = out / f"{rank:03d}_{safe}.png"
            thumb.write_bytes(hit.thumbnail)
            thumbnail = str(thumb)
        else:
            thumbnail = base64.b64encode(hit.thumbnail).decode("ascii")
        fields = hit.as_dict()
        results.append({**fields, "path": str(Path(root) / hit.path) if root else hit.path, "thumbnail": thumbnail})
    report.update(results=[{k: v for k, v in r.items() if k != "thumbnail" or out is not None} for r in results],
                  clip=encoder.spec, k=args.k, db=str(args.db))
    printed: dict = {"results": results}
    if cut is not None:  # what was cut out of the photo before it was embedded
        printed["cut"] = cut.as_dict()
        report.update(cut=cut.as_dict())
        if cut.note:
            print(f"note: {cut.note}", file=sys.stderr)
    print(json.dumps(printed, indent=1))


# ------------------------------------------------------------------------------------------ finetune-points
@command("finetune-points", "fine-tune a CLIP-aligned point-cloud encoder on an indexed library (its metadata as "
                            "captions, InfoNCE or the hard contrastive loss)")
def _finetune_points_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, help="database folder made by `atelier index` (with --store milvus: the "
                                                    "Milvus Lite file or server URL)")
    parser.add_argument("--store", choices=limits.STORES, default="embedded",
                        help="where the library lives (as given to `atelier index`)")
    parser.add_argument("--init", default=None, metavar="PATH",
                        help="the point encoder to start from, trained for the library's CLIP (default: the shipped "
                             "backend/models/weights/points_domain.pt for a library indexed with the domain CLIP)")
    parser.add_argument("--loss", choices=("info_nce", "hcl"), default="info_nce",
                        help="info_nce, or hcl: the hard contrastive loss of the seed paper (Robinson et al. 2021)")
    parser.add_argument("--beta", type=float, default=None, help="hcl: concentration on hard negatives (default 1.0)")
    parser.add_argument("--tau-plus", type=float, default=None, help="hcl: class prior in [0, 1) (default 0.1)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default 300)")
    parser.add_argument("--batch", type=int, default=None, help="distinct shapes per step (default 32)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-4)")
    parser.add_argument("--out", required=True, help="the fine-tuned point encoder to write (.pt)")


@_finetune_points_args.run
def _finetune_points(args, report: Report) -> None:
    from backend.cli.common import staged_progress_bars
    from backend.retrieve.finetune_points import finetune_config, finetune_points

    config = finetune_config(steps=args.steps, batch=args.batch, lr=args.lr, loss=args.loss, beta=args.beta,
                             tau_plus=args.tau_plus, seed=args.seed)
    device = resolve(args, report)
    bars, close = staged_progress_bars()

    def progress(step: int, total: int, stage: str = "train", **metrics) -> None:  # meshes, teacher, train
        bars(step, total, stage=stage, **metrics)

    try:
        result = finetune_points(args.db, config, store=args.store, init=args.init, out=args.out, device=device,
                                 progress=progress, clip=args.clip)
    finally:
        close()
    first, last = result.records[0]["loss"], result.records[-1]["loss"]
    report.update(clip=result.clip_spec, db=str(args.db), out=str(args.out), init=result.init, shapes=result.shapes,
                  skipped=[{"path": path, "reason": why} for path, why in result.skipped], steps=config.steps,
                  loss=config.loss, beta=config.beta, tau_plus=config.tau_plus, loss_first=first, loss_last=last,
                  seconds_teacher=round(result.teacher_seconds, 3), seconds_total=round(result.seconds, 3),
                  train_recall_at_1={"image": result.recall_after["image"], "text": result.recall_after["text"]},
                  train_recall_at_1_init=dict(result.recall_before))
    for path, why in result.skipped:
        print(f"skipped: {path}: {why}", file=sys.stderr)
    print(f"wrote {args.out}: {result.shapes} shapes, {config.loss} loss {first:.4g} -> {last:.4g} over "
          f"{config.steps} steps; train recall@1 image {result.recall_before['image']:.3f} -> "
          f"{result.recall_after['image']:.3f}, text {result.recall_before['text']:.3f} -> "
          f"{result.recall_after['text']:.3f}")
