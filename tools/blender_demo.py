"""The Blender stage of `python build.py demo`: the main job through the add-on inside the real Blender module.

Run with the Blender environment's python (bpy + pyzmq, no torch):

    .venv-blender/bin/python tools/blender_demo.py --out demo_out [--backend-python .venv/bin/python]

Headless: a factory-empty scene with Suzanne; the add-on (enabled as Blender enables it) starts the backend
itself from the backend environment's python, then Stylize from text and Restyle from a style image run
through the add-on's operators; a small procedural library is indexed, searched by text and by a sketch,
and the top hits are imported, through the add-on's job runtime; then the Generate operator makes shapes from
three prompts ("a photo of a chair", "... a table", "... a lamp": the domain CLIP's prompt style) with the backend's
shipped generator (backend/models/weights/generator_domain.pt, trained with the domain CLIP by `python build.py
generator`; the demo never trains one; --generator or $ATELIER_GENERATOR names another) and keeps each prompt's
best-scoring sample. bpy's timers never fire in the module, so this script calls the add-on's timer function
(`session.drain()`) itself, as the add-on tests do.

Writes OUT/scene.blend, OUT/renders/*.png (each result with Workbench; the whole row, and the three generated
shapes together as generated_three.png, with Cycles), OUT/blender_demo.json (every job's figures; "generate" holds
one entry per prompt: CLIP score, seconds, faces), OUT/search/*.png (the hits' thumbnails). Exits non-zero with one
readable line on any failure. `--fast` shrinks every job (2 steps, tiny textures and renders, 2 samples per prompt
on a 32 grid) for a quick check.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the add-on and shared_protocol, as a developer's Blender would see them

ADDON = "blender_addon"
FORBIDDEN = ("torch", "torchvision", "open_clip", "backend", "trimesh", "PIL")
"""Modules that must never load here: Blender has none of them (the add-on talks to the backend over ZeroMQ)."""
REAL_CLIPS = ("ViT-B-32:openai", "RN50:openai")
DEMO_PROMPTS = ("a photo of a chair", "a photo of a table", "a photo of a lamp")
"""The Generate prompts, in the domain CLIP's zero-shot form ('a photo of a <category>'), the form it trained on."""

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/ (the demo runs as a script)
from demo_scene import (DemoError, add_camera_and_light, frame_one, make_active, place, render_cycles,  # noqa: E402
                        render_png, run_operator, say, stripes_png)


# -- the add-on's queue ---------------------------------------------------------------------------------

def pump_until(predicate, timeout: float, what: str, report=None):
    """Calls the add-on's timer function until `predicate()` is true; DemoError after `timeout` seconds.
    `report()` runs about every 5 s (progress lines)."""
    from blender_addon.engine import session

    deadline, next_report = time.monotonic() + timeout, time.monotonic() + 5.0
    while time.monotonic() < deadline:
        session.drain()
        value = predicate()
        if value:
            return value
        if report is not None and time.monotonic() >= next_report:
            report()
            next_report = time.monotonic() + 5.0
        time.sleep(0.03)
    runtime = session.get_runtime()
    raise DemoError(f"timed out after {timeout:.0f} s waiting for {what} (backend {runtime.state}: "
                    f"{runtime.message}; log {runtime.log_path})")


def wait_job(record, timeout: float):
    """Drains the queue until the job ends; returns it when done, DemoError with its reason otherwise."""
    started = time.monotonic()

    def report():
        loss = f", loss {record.loss:.4g}" if record.loss is not None else ""
        say(f"  {record.label}: {record.state} {record.stage} {record.step}/{record.total}{loss} "
            f"({time.monotonic() - started:.0f} s)")

    pump_until(lambda: record.state in ("done", "failed", "cancelled"), timeout, f"job {record.label}", report)
    if record.state != "done":
        raise DemoError(f"{record.label} {record.state}: {record.error_text()}")
    record.meta["wall_s"] = round(time.monotonic() - started, 2)
    return record


def newest_job():
    from blender_addon.engine import session

    return session.get_runtime().jobs.all()[0]


def enable_addon(backend_python: Path, out: Path, device: str):
    import bpy  # first: it puts Blender's own modules (addon_utils) on the path

    import addon_utils

    bpy.ops.wm.read_factory_settings(use_empty=True)
    module = addon_utils.enable(ADDON, default_set=True, handle_error=None)
    if module is None:
        raise DemoError(f"addon_utils.enable({ADDON!r}) failed (see the traceback above)")
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.mode = "LOCAL"
    prefs.python = str(backend_python)
    prefs.device = device
    prefs.clip = "domain"
    prefs.restyle_clip = "domain"
    prefs.log_dir = str(out / "logs")
    prefs.start_timeout = 180.0
    prefs.connect_timeout = 20.0
    return prefs


def start_backend(figures: dict):
    import bpy

    from blender_addon.engine import session

    started = time.monotonic()
    run_operator(bpy.ops.atelier.backend_start, "atelier.backend_start")
    runtime = session.get_runtime()
    pump_until(lambda: runtime.state not in ("starting", "connecting"), 200, "the backend to start")
    if not runtime.ready:
        raise DemoError(f"the backend did not start: {runtime.message} ({runtime.hint}); log {runtime.log_path}")
    welcome = runtime.welcome
    say(f"backend started by the add-on in {time.monotonic() - started:.1f} s: device {welcome.device}, "
        f"renderer {welcome.renderer}, job kinds {', '.join(sorted(welcome.job_kinds))}; log {runtime.log_path}")
    real = [name for name in REAL_CLIPS if name in welcome.models]
    if real:
        say(f"real CLIP weights present ({', '.join(real)}); the demo still uses the domain CLIP for speed")
    else:
        say("no real CLIP weights: using the domain CLIP trained on the procedural world "
            "(`atelier models pull ViT-B-32:openai` fetches real ones)")
    figures["backend"] = {"device": welcome.device, "renderer": welcome.renderer, "models": list(welcome.models),
                          "start_s": round(time.monotonic() - started, 2), "clip": "domain",
                          "real_clip_weights": real}
    return runtime


def loss_line(record) -> str:
    fields = record.fields
    return (f"loss {fields['loss_first']:.4g} -> {fields['loss_last']:.4g} in {fields['steps']} steps, "
            f"{fields['seconds']:.1f} s on the backend ({record.meta['wall_s']:.1f} s in Blender)")


def stylize(source, args, figures: dict):
    import bpy

    settings = bpy.context.scene.atelier
    settings.stylize_prompt = "a red monkey"
    settings.stylize_quality = "draft"
    settings.stylize_steps = args.stylize_steps
    settings.stylize_seed = 0
    make_active(source)
    say(f"stylize {source.name!r} from text 'a red monkey' (draft, {args.stylize_steps or 'preset'} steps)")
    run_operator(bpy.ops.atelier.stylize, "atelier.stylize")
    record = wait_job(newest_job(), args.timeout)
    obj = bpy.data.objects[record.outputs[0]]
    say(f"  stylize: {loss_line(record)} -> object {obj.name!r}")
    figures["stylize"] = {**_loss_figures(record), "object": obj.name, "vertices": len(obj.data.vertices)}
    return obj


def restyle(source, style: Path, args, figures: dict):
    import bpy

    settings = bpy.context.scene.atelier
    settings.restyle_styles.clear()
    settings.restyle_quality = "draft"
    settings.restyle_steps = args.restyle_steps
    settings.restyle_seed = 0
    settings.restyle_palette = "auto"
    settings.restyle_pattern_scale = 1.0
    settings.restyle_texture_size = args.texture_size
    make_active(source)
    run_operator(lambda: bpy.ops.atelier.restyle_style_add(filepath=str(style)), "atelier.restyle_style_add")
    say(f"restyle {source.name!r} from the style image {style.name} (draft, {args.restyle_steps or 'preset'} steps, "
        f"{args.texture_size} px texture)")
    run_operator(bpy.ops.atelier.restyle, "atelier.restyle")
    record = wait_job(newest_job(), args.timeout)
    obj = bpy.data.objects[record.outputs[0]]
    say(f"  restyle: {loss_line(record)}; palette {', '.join(record.fields['palette'])} -> object {obj.name!r}")
    figures["restyle"] = {**_loss_figures(record), "object": obj.name, "palette": record.fields["palette"],
                          "texture_size": record.fields["texture_size"]}
    return obj


def _loss_figures(record) -> dict:
    keep = ("loss_first", "loss_last", "steps", "seconds", "quality", "clip")
    return {**{k: record.fields[k] for k in keep if k in record.fields}, "wall_s": record.meta["wall_s"]}


def make_world(backend_python: Path, world: Path, shapes: int) -> dict:
    """A procedural library + dataset from the backend's `atelier world` (the add-on has no job for it: the
    library is a folder on the backend's machine)."""
    manifest = world / "manifest.json"
    if not manifest.is_file() or len(json.loads(manifest.read_text()).get("shapes", [])) != shapes:
        shutil.rmtree(world, ignore_errors=True)  # the demo's own folder, from a run with another --shapes
        say(f"writing a procedural library of {shapes} shapes into {world} (atelier world)")
        command = [str(backend_python), "-c", "import sys; from backend.cli import main; sys.exit(main())",
                   "world", str(world), "--shapes", str(shapes), "--seed", "0"]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise DemoError(f"`atelier world` failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return json.loads(manifest.read_text())


def search_library(runtime, world: Path, manifest: dict, out: Path, args, figures: dict):
    import bpy

    from blender_addon.core import kinds
    from blender_addon.operators.importers import IMPORTERS

    db = out / "library_db"
    index = wait_job(runtime.submit("index", kinds.index_params(str(world / "library"), str(db), "domain", 4),
                                    label="Index library"), args.timeout)
    fields = index.fields
    say(f"  index: {fields['shapes']} shapes ({fields['indexed']} indexed, {fields['skipped']} already indexed, "
        f"{len(fields['failed'])} failed) in {fields['seconds']:.1f} s")
    if fields["failed"]:
        raise DemoError(f"indexing failed for {fields['failed']}")
    figures["index"] = {k: fields[k] for k in ("shapes", "indexed", "skipped", "seconds") if k in fields}

    # The search panel is not built yet: keep each search's thumbnails as files (the importer drops them).
    thumbs = out / "search"
    thumbs.mkdir(exist_ok=True)
    plain = IMPORTERS["search"]

    def keep_thumbnails(record, context):
        for rank, hit in enumerate(record.result.fields["hits"]):
            thumbnail = record.result.blobs[hit["thumbnail"]]
            (thumbs / f"{record.meta['query']}_{rank}_{hit['name']}.png").write_bytes(thumbnail)
        return plain(record, context)

    IMPORTERS["search"] = keep_thumbnails
    sketch_shape = next(s for s in manifest["shapes"] if s["category"] == args.sketch_category)
    sketch = world / sketch_shape["sketches"][0]
    queries = {  # query -> (what it is, text, blobs)
        "text": ("a red chair", "a red chair", {}),
        "sketch": (sketch.name, "", {"sketch": sketch.read_bytes()}),
    }
    tops = {}
    try:
        for query, (what, text, blobs) in queries.items():
            params = kinds.search_params(str(db), text, k=args.k)
            record = wait_job(runtime.submit("search", params, label=f"Search by {query}", meta={"query": query},
                                             blobs=blobs), args.timeout)
            hits = record.fields["hits"]
            if not hits:
                raise DemoError(f"the search by {query} found nothing")
            shown = ", ".join(f"{h['name']} ({h['category']}) {h['score']:.3f}" for h in hits)
            say(f"  search by {query} ({what!r}): {shown}")
            if query == "text":
                chairs = [s["id"] for s in manifest["shapes"] if s["category"] == "chair"]
                red = [s["id"] for s in manifest["shapes"] if s["colour"] == "red"]
                both = sorted(set(chairs) & set(red))
                say(f"    (the library holds chairs {', '.join(chairs) or 'none'}, red shapes "
                    f"{', '.join(red) or 'none'}, red chairs {', '.join(both) or 'none'})")
            figures[f"search_{query}"] = {"query": what, "mode": record.fields["mode"], "wall_s": record.meta["wall_s"],
                                          "hits": [{k: h[k] for k in ("name", "category", "score")} for h in hits]}
            tops[query] = hits[0]
    finally:
        IMPORTERS["search"] = plain
    expected = sketch_shape["id"]
    figures["search_sketch"]["drawn_shape"] = expected
    say(f"  the sketch was drawn from {expected}; its top hit is {tops['sketch']['name']}")

    fetched = []
    for query in ("text", "sketch"):
        hit = tops[query]
        if any(hit["shape_id"] == other["shape_id"] for other, _ in fetched):
            continue
        bpy.context.scene.cursor.location = (0.0, 0.0, 0.0)
        record = wait_job(runtime.submit("fetch_shape", kinds.fetch_shape_params(str(db), hit["shape_id"]),
                                         label=f"Import {hit['name']}"), args.timeout)
        obj = bpy.data.objects[record.outputs[0]]
        say(f"  imported the top {query} hit {hit['name']!r} as {obj.name!r} ({len(obj.data.polygons)} faces)")
        fetched.append((hit, obj))
    return [obj for _, obj in fetched]


SHIPPED_GENERATOR = ROOT / "backend" / "models" / "weights" / "generator_domain.pt"
"""The backend's shipped generator (`backend.generate.shipped.SHIPPED_GENERATOR`; the demo may not import the
backend), checked before the demo starts so a missing file stops it at once rather than after the other jobs."""
GENERATOR_ENV = "ATELIER_GENERATOR"
"""The backend's default-generator override (`backend.generate.shipped.GENERATOR_ENV`): the backend the add-on
starts inherits this environment."""


def demo_generator(args) -> str:
    """Which generator the demo's Generate jobs load, as text for the log; DemoError when it is missing. The demo
    never trains one: --generator names a file, else the backend's default ($ATELIER_GENERATOR, else the shipped
    generator) is used and the Generator preference stays empty."""
    if args.generator:
        path = Path(args.generator).expanduser().resolve()
        if not path.is_file():
            raise DemoError(f"--generator {path} is not a file; leave it out to use the shipped generator")
        return str(path)
    override = os.environ.get(GENERATOR_ENV, "").strip()
    if override:
        if not Path(override).expanduser().is_file():
            raise DemoError(f"${GENERATOR_ENV} names {override}, which is not a file; unset it to use the shipped "
                            "generator")
        return f"{override} (${GENERATOR_ENV})"
    if not SHIPPED_GENERATOR.is_file():
        raise DemoError(f"the shipped generator {SHIPPED_GENERATOR} is missing: run `python build.py generator` to "
                        "train it (the demo never trains one), or pass --generator FILE")
    return f"the shipped generator {SHIPPED_GENERATOR.relative_to(ROOT)}"


def generate(prompt: str, args, figures: dict) -> list:
    """The Generate panel's operator: shapes from text at the 3D cursor, with the generator `demo_generator` chose;
    returns the imported objects, the best CLIP score first, and records the prompt's figures."""
    import bpy

    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.generator_checkpoint = str(Path(args.generator).expanduser().resolve()) if args.generator else ""
    settings = bpy.context.scene.atelier
    settings.generate_from = "TEXT"
    settings.generate_prompt = prompt
    settings.generate_samples = args.generate_samples
    settings.generate_refine = args.generate_refine
    settings.generate_style = False
    settings.generate_resolution = args.generate_resolution
    settings.generate_threshold = args.generate_threshold
    settings.generate_temperature = 0.5
    settings.generate_seed = 0
    bpy.context.scene.cursor.location = (0.0, 0.0, 0.0)
    say(f"generate from text {prompt!r}: {args.generate_samples} samples, {args.generate_refine} refinement steps, "
        f"grid {args.generate_resolution}")
    run_operator(bpy.ops.atelier.generate, "atelier.generate")
    record = wait_job(newest_job(), args.timeout)
    fields = record.fields
    objects = [bpy.data.objects[name] for name in record.outputs]
    # The score a sample is chosen by: after refinement when there was any (the CLIP score on held-out views).
    scores = [float(x) for x in (fields["clip_score_after"] if fields["refine"] else fields["clip_score_before"])]
    order = sorted(range(len(objects)), key=lambda i: -scores[i])
    best = order[0]
    shapes = ", ".join(f"{objects[i].name!r} {len(objects[i].data.polygons)} faces score {scores[i]:.3f}"
                       for i in order)
    say(f"  generate {prompt!r}: {len(objects)} shapes ({shapes}); {fields['seconds']:.1f} s on the backend "
        f"({record.meta['wall_s']:.1f} s in Blender); shown: {objects[best].name!r}")
    figures.setdefault("generate", []).append({
        "prompt": fields["prompt"], "clip": fields["clip"], "samples": fields["samples"], "refine": fields["refine"],
        "seed": fields["seed"], "resolution": record.params["resolution"], "threshold": record.params["threshold"],
        "clip_score": scores[best], "faces": fields["faces"][best], "seconds": fields["seconds"],
        "clip_scores": scores, "clip_score_before": fields["clip_score_before"],
        "clip_score_after": fields["clip_score_after"], "vertices": fields["vertices"], "all_faces": fields["faces"],
        "wall_s": record.meta["wall_s"], "object": objects[best].name, "objects": [o.name for o in objects],
        "checkpoint": record.params.get("checkpoint", "")})
    return [objects[i] for i in order]


def generate_three(args, figures: dict) -> list:
    """The three prompts through the Generate panel; each prompt's best sample stays in the scene (its other
    samples are removed: they are in the JSON figures). Returns the three objects."""
    import bpy

    say(f"generating {len(args.generate_prompts)} prompts with {demo_generator(args)} and the domain CLIP it was "
        "trained with; no training at demo time")
    chosen = []
    for prompt in args.generate_prompts:
        best, *others = generate(prompt, args, figures)
        for obj in others:
            bpy.data.objects.remove(obj, do_unlink=True)
        chosen.append(best)
    return chosen


FLOOR_COLOUR = (0.3, 0.32, 0.36, 1.0)
"""The generated shapes' floor: darker than their light grey, so their outline reads against it."""


def render_generated(objects: list, camera, path: Path, width: int, height: int, samples: int) -> Path:
    """The generated objects alone, where the row placed them (side by side, 3 units apart, in prompt order),
    standing on a pale floor under the sun and a fill light from the camera's side (without them, legs in the
    shadow of a table top took the sky's grey and vanished into the background), rendered with Cycles at
    `samples` (at least 64: thin parts in shade stayed speckled at 16)."""
    import bpy
    import mathutils

    for obj in bpy.context.scene.objects:
        if obj.type == "MESH":
            obj.hide_render = obj not in objects
    centre = sum(obj.location.x for obj in objects) / len(objects)
    distance = ((len(objects) - 1) * 3.0 + 3.0) / 2 / 0.36  # as the whole row's camera: 50 mm, 39.6 degrees
    camera.location = (centre, -distance * 0.956, distance * 0.292)
    bottom = min((obj.matrix_world @ mathutils.Vector(corner)).z for obj in objects for corner in obj.bound_box)
    floor_mesh = bpy.data.meshes.new("Demo Floor")
    half = distance * 2.0
    floor_mesh.from_pydata([(centre - half, -half, bottom), (centre + half, -half, bottom),
                            (centre + half, half, bottom), (centre - half, half, bottom)], [], [(0, 1, 2, 3)])
    floor = bpy.data.objects.new("Demo Floor", floor_mesh)
    material = bpy.data.materials.new("Demo Floor")
    material.diffuse_color = FLOOR_COLOUR
    if getattr(material, "use_nodes", True) is False:  # 4.x makes node-less materials; 5.x always has nodes
        material.use_nodes = True
    shader = material.node_tree.nodes.get("Principled BSDF") if material.node_tree else None
    if shader is not None:
        shader.inputs["Base Color"].default_value = FLOOR_COLOUR
    floor.data.materials.append(material)
    fill = bpy.data.objects.new("Demo Fill", bpy.data.lights.new("Demo Fill", "SUN"))
    fill.data.energy = 0.8
    fill.rotation_euler = (math.radians(75), 0.0, math.radians(-25))  # low, from in front and left of the camera
    for obj in (floor, fill):
        bpy.context.scene.collection.objects.link(obj)
    try:
        return render_cycles(path, width, height, max(samples, 64))
    finally:
        for obj in (floor, fill):
            bpy.data.objects.remove(obj)
        for obj in bpy.context.scene.objects:
            obj.hide_render = False


def main(argv: list[str] | None = None) -> int:
    # bpy's module passes its own argv; only what follows "--" (when present) is ours.
    argv = sys.argv[1:] if argv is None else argv
    if "--" in argv:
        argv = argv[argv.index("--") + 1:]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "demo_out"), help="output folder")
    parser.add_argument("--backend-python", default=os.environ.get("ATELIER_BACKEND_PYTHON", ""),
                        help="the backend environment's python (default: $ATELIER_BACKEND_PYTHON, else .venv)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--stylize-steps", type=int, default=0, help="0: the draft preset's 150")
    parser.add_argument("--restyle-steps", type=int, default=300,
                        help="restyle steps (the draft preset has 150; Suzanne's face needs more to form stripes)")
    parser.add_argument("--texture-size", type=int, default=512, help="restyle texture side (the draft preset's)")
    parser.add_argument("--shapes", type=int, default=16, help="procedural library size")
    parser.add_argument("--sketch-category", default="lamp")
    parser.add_argument("-k", type=int, default=3, help="hits per search")
    parser.add_argument("--size", default="480x270", help="render size WxH")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples of the whole-row render")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds any one job may take")
    parser.add_argument("--generator", default="",
                        help="a generator file for the Generate jobs (default: the backend's shipped generator, "
                             f"{SHIPPED_GENERATOR.relative_to(ROOT)}, or the file ${GENERATOR_ENV} names)")
    parser.add_argument("--generate-prompts", nargs=3, metavar="PROMPT", default=list(DEMO_PROMPTS),
                        help="the three Generate prompts (the domain CLIP knows 'a photo of a <category>')")
    parser.add_argument("--generate-samples", type=int, default=3,
                        help="samples per prompt; the one with the best CLIP score is kept")
    parser.add_argument("--generate-refine", type=int, default=20, help="ISS refinement steps per sample")
    parser.add_argument("--generate-resolution", type=int, default=64)
    parser.add_argument("--generate-threshold", type=float, default=0.5)
    parser.add_argument("--fast", action="store_true",
                        help="a quick check: 2 steps, tiny textures, 8 shapes, 2 samples per prompt on a 32 grid")
    args = parser.parse_args(argv)
    if args.fast:
        args.stylize_steps, args.restyle_steps, args.texture_size, args.shapes, args.size = 2, 2, 64, 8, "96x54"
        args.samples = 2
        args.generate_samples, args.generate_refine = 2, 2
        # A coarse grid, and a surface a barely trained test generator also clears.
        args.generate_resolution, args.generate_threshold = 32, 0.3
    try:
        return run(args)
    except DemoError as exc:
        print(f"[blender-demo] error: {exc}", file=sys.stderr, flush=True)
        return 1


def run(args) -> int:
    started = time.monotonic()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    backend_python = Path(args.backend_python or ROOT / ".venv" / (
        "Scripts/python.exe" if os.name == "nt" else "bin/python"))
    if not backend_python.exists():
        raise DemoError(f"the backend environment's python is missing at {backend_python}; "
                        "run `python build.py setup`")
    width, height = (int(v) for v in args.size.lower().split("x"))
    demo_generator(args)  # a missing generator stops the demo before any job runs

    import bpy  # first: it puts Blender's own modules (addon_utils) on the path

    import addon_utils

    figures: dict = {"blender": bpy.app.version_string}
    say(f"Blender {bpy.app.version_string} (module, background {bpy.app.background}); output in {out}")
    enable_addon(backend_python, out, args.device)
    bpy.ops.mesh.primitive_monkey_add()
    suzanne = bpy.context.active_object
    suzanne.name = "Suzanne"
    suzanne.modifiers.new("Subdivision", "SUBSURF").levels = 1
    bpy.ops.object.shade_smooth()
    try:
        runtime = start_backend(figures)
        stylized = stylize(suzanne, args, figures)
        restyled = restyle(suzanne, stripes_png(out / "style_stripes.png"), args, figures)
        world = make_world(backend_python, out / "world", args.shapes)
        fetched = search_library(runtime, out / "world", world, out, args, figures)
        if "generate" not in runtime.job_kinds:
            raise DemoError("this backend has no `generate` job: update the Atelier backend")
        generated = generate_three(args, figures)

        # The row: the source, its two results, the library hits, the generated shapes.
        row = [suzanne, stylized, restyled, *fetched, *generated]
        for position, obj in enumerate(row):
            make_active(obj)
            place(obj, position * 3.0)
        # Workbench colour: the stylized colours are a colour attribute; the rest are image textures (or the
        # material's colour where there is none).
        colours = {stylized.name: "VERTEX", **{obj.name: "MATERIAL" for obj in generated}}
        camera = add_camera_and_light((len(row) - 1) * 1.5, len(row) * 3.0)
        renders = out / "renders"
        renders.mkdir(exist_ok=True)
        written = []
        for obj in row:
            for other in row:
                other.hide_render = other is not obj
            frame_one(camera, obj)
            name = obj.name.replace(" ", "_").replace(".", "_")
            written.append(render_png(renders / f"{name}.png", colours.get(obj.name, "TEXTURE"),
                                      width, height))
        for obj in row:
            obj.hide_render = False
        # The whole row: wide enough for (n - 1) * 3 + 2 units at a 50 mm lens (39.6 degrees across).
        distance = ((len(row) - 1) * 3.0 + 3.0) / 2 / 0.36
        camera.location = ((len(row) - 1) * 1.5, -distance * 0.956, distance * 0.292)
        written.append(render_cycles(renders / "scene.png", width * 2, height * 2, args.samples))
        written.append(render_generated(generated, camera, renders / "generated_three.png", width * 2, height * 2,
                                        args.samples))
        say(f"rendered {len(written)} PNGs into {renders} (each result: Workbench; the row and the generated "
            f"shapes ({', '.join(repr(p) for p in args.generate_prompts)}): Cycles, {args.samples} samples)")
        figures["renders"] = [str(p.relative_to(out)) for p in written]
    finally:
        from blender_addon.engine import session

        runtime = session.get_runtime(optional=True)
        if runtime is not None:
            bpy.ops.atelier.backend_stop()
            say("backend stopped")
    blend = out / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    if not blend.is_file():
        raise DemoError(f"{blend} was not written")
    addon_utils.disable(ADDON, default_set=True, handle_error=None)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
    if leaked:
        raise DemoError(f"the add-on imported backend modules inside Blender: {leaked[:5]}")
    figures["seconds"] = round(time.monotonic() - started, 1)
    (out / "blender_demo.json").write_text(json.dumps(figures, indent=2))
    say(f"saved {blend} and {out / 'blender_demo.json'}; {figures['seconds']} s in all")
    return 0


if __name__ == "__main__":
    from bpy_exit import exit_blender_module

    exit_blender_module(main())
