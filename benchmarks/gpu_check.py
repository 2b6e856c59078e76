"""One GPU check: prepare the CUDA paths, run the tests marked `cuda`, time every job; one JSON and one table.

    python build.py gpu-check [--report FILE] [--bundle .gpu] [--jobs render,stylize,...] [--budget 470]
    python build.py gpu-check --device cpu --tiny --in-process     (the table and JSON code on tiny CPU runs)
    python build.py gpu-bundle                                      (on a machine WITH network: fills .gpu/)

On a machine with a CUDA GPU (`--device cuda`, the default):
1. Prepare. The lent GPU machines reach no network: nothing is downloaded here. Each package the backend needs
   is used where the interpreter already has it, else installed from the wheels in `<bundle>/wheels`
   (`pip --no-index`) into `<bundle>/site`; nvdiffrast, when not installed, is built from its source in
   `<bundle>/nvdiffrast` (`pip --no-build-isolation`, for this GPU's architecture only). gsplat is prepared only
   when a Gaussian renderer exists under backend/ (a module that imports gsplat: backend/external.py). What is
   missing is SKIPPED with the reason and the fix (`python build.py gpu-bundle` where there is network, then
   carry the bundle folder). A failed install or build is a FAILURE.
2. The tests marked `cuda` (or the older `gpu`), in the test files that carry the mark: renderer parity torch vs
   nvdiffrast (images and gradients), CLIP on CUDA against the CPU.
3. Each job once, time-bounded (a subprocess per job, killed at its share of `--budget`; the long loops are
   cancelled before that and their full run projected from the steps done): render, stylize, restyle,
   generate, index, search, segment, splat (Gaussian splatting: gsplat against the PyTorch path, CUDA only).
Then one table (job, seconds, target, met?) and one JSON (`--report`). Exit 1 when a CUDA path failed (a test,
an install or build, a job's error); skipped items are printed with their reason and do not fail the check.
Without a CUDA GPU: one line, exit 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results" / "gpu_check.json"
SCHEMA = "atelier.gpu_check/1"
BUDGET_S = 470.0
"""The whole check, preparation included, must end within 8 minutes: this leaves 10 s for the report."""

BUNDLED = (
    # (distribution, module): what the backend imports that the lent GPU image lacks (read off its package list,
    # /work/.library/device/KINDS.md: torch, torchvision, numpy, pillow, scikit-image, pytest and more are there).
    ("pyzmq", "zmq"), ("trimesh", "trimesh"), ("xatlas", "xatlas"), ("open-clip-torch", "open_clip"),
    ("ftfy", "ftfy"), ("wcwidth", "wcwidth"), ("faiss-cpu", "faiss"), ("segment-anything", "segment_anything"),
)
NVDIFFRAST_GIT = "https://github.com/NVlabs/nvdiffrast"
NVDIFFRAST_FILES = ("setup.py", "pyproject.toml", "LICENSE.txt", "README.md", "MANIFEST.in", "csrc", "nvdiffrast")
"""What of nvdiffrast's repository the build needs (its docs and samples stay behind: the bundle travels)."""

JOBS = ("render", "stylize", "restyle", "generate", "index", "search", "segment", "splat", "reconstruct")
TARGETS: dict[str, tuple[str, float]] = {
    # job -> (what the issue asks, the limit its `seconds` must stay under)
    "stylize": ("default run < 60 s", 60.0),
    "generate": ("< 2 s per shape at 128^3", 2.0),
    "restyle": ("< 5 min per asset", 300.0),
    "search": ("p50 < 2 ms at 100k shapes", 0.002),
    "reconstruct": ("DreamGaussian: about 2 min per photo", 120.0),
}
JOB_CAP_S = {"render": 45, "stylize": 90, "restyle": 90, "generate": 60, "index": 50, "search": 75, "segment": 45,
             "splat": 40, "reconstruct": 150}
"""Each job's own time bound in seconds (its subprocess is killed there); the budget left may cut it shorter."""
JOB_FLOOR_S = 15.0
"""A job is not started with less than this left to it: it is skipped for lack of time instead."""
TESTS_CAP_S = 120.0


@dataclass
class Item:
    """One prepared package, or one skipped or failed step, for the report."""

    name: str
    status: str
    """'present' | 'installed' | 'built' | 'skipped' | 'failed'"""
    detail: str = ""


@dataclass
class Row:
    """One job's line of the table."""

    job: str
    status: str
    """'ok' | 'skipped' | 'failed'"""
    seconds: float | None = None
    """The figure the target is about: whole run (stylize, restyle), per shape (generate), p50 latency (search),
    one step or one call otherwise."""
    how: str = "measured"
    """'measured', or 'projected from N of M steps' when a long run was cancelled at its time bound."""
    target: str = ""
    limit_s: float | None = None
    met: bool | None = None
    """None when there is no target, or when the settings were not the target's (--tiny) or nothing was measured."""
    detail: dict = field(default_factory=dict)
    why: str = ""
    """Why it was skipped or failed."""


@dataclass
class Settings:
    """The sizes the jobs run at: the issue's (full, on a GPU) or tiny (the CPU test of the plumbing)."""

    tiny: bool = False

    @property
    def splat(self) -> dict:
        return {"gaussians": 200, "size": 32, "views": 2, "repeats": 1} if self.tiny else \
            {"gaussians": 10000, "size": 128, "views": 4, "repeats": 5}

    @property
    def reconstruct(self) -> dict:
        return {"steps": 5, "size": 48, "gaussians": 200, "resolution": 32, "texture_steps": 2} if self.tiny else \
            {"steps": 300, "size": 96, "gaussians": 2000, "resolution": 64, "texture_steps": 60}  # the job's defaults

    @property
    def render(self) -> dict:
        return {"rings": 12, "size": 48, "views": 2, "repeats": 1} if self.tiny else \
            {"rings": 200, "size": 512, "views": 5, "repeats": 5}  # ~80k faces, as render_bench's large row


# ---------------------------------------------------------------------------------------------------- the jobs


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_seconds(fn, repeats: int, device: str) -> float:
    fn()  # warm-up: kernels compiled, caches built
    samples = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


class BoundedRun:
    """Progress and cancel for one long loop: cancels it `budget_s` after start and projects its full length."""

    def __init__(self, budget_s: float):
        from backend.progress import CancelToken

        self.cancel = CancelToken()
        self.timer = threading.Timer(max(budget_s, 1.0), self.cancel.cancel)
        self.start = time.perf_counter()
        self.first: float | None = None  # when the loop's first step ended (set-up before it)
        self.done = self.total = 0

    def progress(self, step: int, total: int, **_metrics) -> None:
        if self.first is None:
            self.first = time.perf_counter()
            self.first_step = step
        self.done, self.total = step, total

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.cancel()

    def projected(self) -> tuple[float, str]:
        """Seconds of the whole run: set-up and first step as measured, the other steps at their mean rate."""
        now = time.perf_counter()
        if self.first is None or self.done <= self.first_step:
            raise RuntimeError(f"cancelled at its time bound before two steps ended ({self.done} of {self.total})")
        rate = (now - self.first) / (self.done - self.first_step)
        return (self.first - self.start) + rate * (self.total - self.first_step), \
            f"projected from {self.done} of {self.total} steps"


def job_render(settings: Settings, device: str) -> dict:
    """Forward + backward of a shaded, antialiased render (render_bench's step), per implementation here."""
    from backend import external
    from render_bench import atelier_step, bumpy_sphere

    s = settings.render
    vertices, faces = bumpy_sphere(s["rings"])
    implementations = ["torch"] + (["nvdiffrast"] if device.startswith("cuda") and external.HAS_NVDIFFRAST else [])
    times = {impl: _median_seconds(atelier_step(vertices, faces, s["size"], s["views"], device, impl),
                                   s["repeats"], device) for impl in implementations}
    used = "nvdiffrast" if "nvdiffrast" in times else "torch"
    detail = {"faces": int(len(faces)), "size": s["size"], "views": s["views"], "seconds_by_renderer": times,
              "renderer": used}
    if "nvdiffrast" not in times and device.startswith("cuda"):
        detail["note"] = "nvdiffrast not installed: only the torch rasterizer timed"
    return {"seconds": times[used], "detail": detail}


def job_stylize(settings: Settings, device: str, budget_s: float) -> dict:
    """The default stylize run (the `standard` preset) end to end on a ~10k-face mesh with a ViT-B-32-sized CLIP."""
    from backend.errors import JobCancelled
    from backend.geometry.mesh import Mesh
    from backend.models.clip import load_clip
    from backend.stylize.text2mesh import preset, stylize
    from render_bench import bumpy_sphere
    from stylize_bench import PROMPT, vit_b32

    if settings.tiny:
        vertices, faces = bumpy_sphere(10)
        clip, config, clip_name = load_clip("tiny", device), preset("draft", steps=2), "tiny"
    else:
        vertices, faces = bumpy_sphere(70)
        clip, config, clip_name = vit_b32(device), preset(), "ViT-B-32 (random weights)"
    mesh = Mesh(vertices=vertices, faces=faces)
    with BoundedRun(budget_s) as run:
        try:
            result = stylize(mesh, PROMPT, clip, config, device=device, progress=run.progress, cancel=run.cancel)
            seconds, how = time.perf_counter() - run.start, "measured"
            steps = result.steps
        except JobCancelled:
            (seconds, how), steps = run.projected(), run.done
    return {"seconds": seconds, "how": how,
            "detail": {"preset": "draft (tiny)" if settings.tiny else "standard (the default)", "clip": clip_name,
                       "steps_run": steps, "steps": config.steps, "faces": int(len(faces))}}


def job_restyle(settings: Settings, device: str, budget_s: float) -> dict:
    """The default restyle run (the `standard` preset) per asset, with a CLIP-RN50-sized feature network."""
    from backend.errors import JobCancelled
    from backend.geometry.mesh import Mesh
    from backend.stylize.restyle import preset, restyle
    from render_bench import bumpy_sphere
    from restyle_bench import RANDOM_RN50, clip_for, style_image

    if settings.tiny:
        vertices, faces = bumpy_sphere(10)
        config = preset("draft", steps=2, render_size=64, batch=1, texture_size=64)
        style, spec = style_image(64), "tiny-rn"
    else:
        vertices, faces = bumpy_sphere(70)
        config, style, spec = preset(), style_image(), RANDOM_RN50
    clip = clip_for(spec, device)
    mesh = Mesh(vertices=vertices, faces=faces)
    with BoundedRun(budget_s) as run:
        try:
            result = restyle(mesh, [style], clip, config, device=device, progress=run.progress, cancel=run.cancel)
            seconds, how, steps = time.perf_counter() - run.start, "measured", result.steps
        except JobCancelled:
            (seconds, how), steps = run.projected(), run.done
    return {"seconds": seconds, "how": how,
            "detail": {"preset": "draft (tiny)" if settings.tiny else "standard (the default)", "clip": clip.name,
                       "steps_run": steps, "steps": config.steps, "render_size": config.render_size,
                       "batch": config.batch, "texture_size": config.texture_size, "faces": int(len(faces))}}


def job_generate(settings: Settings, device: str) -> dict:
    """Seconds per shape of the shipped generator at 128^3 (flow sample, CLIP score, decode, clean-up)."""
    from backend.generate.decode import DecodeConfig
    from backend.generate.generate import GenerateConfig, generate, prompt_condition
    from backend.generate.generator import load_generator
    from backend.generate.shipped import default_generator
    from backend.models.clip import load_clip

    generator = load_generator(default_generator(), device)
    clip = load_clip(generator.clip_spec, device)
    resolution, shapes = (32, 1) if settings.tiny else (128, 3)
    config = GenerateConfig(decode=DecodeConfig(resolution=resolution))
    condition = prompt_condition(clip, "a photo of a chair")
    generate(generator, clip, condition, config)  # warm-up
    seconds = []
    for seed in range(shapes):
        _sync(device)
        start = time.perf_counter()
        generate(generator, clip, condition, GenerateConfig(decode=config.decode, seed=seed + 1))
        _sync(device)
        seconds.append(time.perf_counter() - start)
    return {"seconds": statistics.median(seconds),
            "detail": {"resolution": resolution, "shapes": shapes, "clip": generator.clip_spec,
                       "seconds_each": seconds}}


def job_index(settings: Settings, device: str) -> dict:
    """A world library indexed for real with the domain CLIP (render, embed, commit) on `device`."""
    import shutil
    import tempfile

    from backend.models.clip import load_clip
    from backend.retrieve.indexer import index_library
    from backend.retrieve.query import QueryEncoder
    from backend.world.dataset import write_dataset

    shapes = 2 if settings.tiny else 24
    root = Path(tempfile.mkdtemp(prefix="atelier-gpu-check-index-"))
    try:
        write_dataset(root / "world", shapes, seed=7, views=0, sketches=0, photos=0)
        encoder = QueryEncoder(load_clip("domain", device))
        start = time.perf_counter()
        report = index_library(root / "world" / "library", root / "db", encoder, device=device)
        wall = time.perf_counter() - start
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"seconds": wall, "detail": {"shapes": report.shapes, "shapes_per_s": round(report.shapes / wall, 2),
                                        "clip": "domain"}}


def job_search(settings: Settings, device: str) -> dict:
    """Search latency p50 at 100k shapes (retrieval_latency's database and approximate index; FAISS on the CPU)."""
    from backend.external import require_faiss
    from retrieval_latency import latency_benchmark

    require_faiss().omp_set_num_threads(min(os.cpu_count() or 1, 16))
    shapes, queries = (300, 10) if settings.tiny else (100_000, 200)
    figures = latency_benchmark(shapes=shapes, queries=queries)
    approx = figures["approximate"]
    return {"seconds": approx["latency_random"]["p50_ms"] / 1000.0,
            "detail": {"shapes": shapes, "queries": queries, "index": approx["type"],
                       "p99_ms": approx["latency_random"]["p99_ms"], "recall_at_10": approx["recall_at_10_random"],
                       "build_seconds": approx["build_seconds"], "note": "FAISS runs on the CPU"}}


def job_segment(settings: Settings, device: str) -> dict:
    """Seconds per photo of the whole segmentation (relevance map, proposals, merge) with the domain CLIP."""
    from backend.errors import InvalidInputError
    from backend.models.clip import load_clip
    from backend.segment.segment import SegmentConfig, segment
    from segment_bench import photos

    clip = load_clip("domain", device)
    count = 1 if settings.tiny else 6
    data = photos(count + 1, 64 if settings.tiny else 128, 0)
    seconds, misses = [], 0
    for i, (shape, image, _mask) in enumerate(data):
        start = time.perf_counter()
        try:
            segment(image, f"a {shape.category}", clip, SegmentConfig(), device=device)
        except InvalidInputError as exc:  # "no mask found" is an answer, still timed
            if "no mask found" not in str(exc):
                raise
            misses += bool(i)
        _sync(device)
        if i:  # the first photo warms up
            seconds.append(time.perf_counter() - start)
    return {"seconds": statistics.median(seconds), "detail": {"photos": count, "no_mask": misses, "clip": "domain"}}


def job_reconstruct(settings: Settings, device: str) -> dict:
    """One whole photo-to-3D reconstruction (init sphere, CLIP guidance with the domain CLIP; gsplat when installed):
    its seconds, stage by stage in the detail."""
    import torch

    from backend.models.clip import load_clip
    from backend.reconstruct.extract import MeshExtractConfig
    from backend.reconstruct.fit_gaussians import GaussianFitConfig
    from backend.reconstruct.reconstruct import ReconstructConfig, reconstruct
    from backend.reconstruct.reference_view import ViewFitConfig
    from backend.world.shape import make_shape
    from backend.world.views import render_photo

    s = settings.reconstruct
    photo = render_photo(make_shape(3, "chair"), 128, torch.Generator().manual_seed(0))
    config = ReconstructConfig(init="sphere", gaussians=s["gaussians"], view=ViewFitConfig(size=s["size"]),
                               fit=GaussianFitConfig(steps=s["steps"], preview_every=0),
                               mesh=MeshExtractConfig(resolution=s["resolution"], refine_steps=s["texture_steps"]))
    started = time.perf_counter()
    result = reconstruct(photo.image.numpy(), photo.mask.numpy(), load_clip("domain", device), config, device=device)
    _sync(device)
    return {"seconds": time.perf_counter() - started,
            "detail": {**s, "stages": {k: round(v, 2) for k, v in result.seconds.items()},
                       "gaussians_final": len(result.fit.model), "faces": result.mesh.num_faces}}


SPLAT_TOLERANCE = 0.02
"""Largest |gsplat - torch| allowed in any pixel of the splat job's images (and alphas)."""


def job_splat(settings: Settings, device: str) -> dict:
    """Gaussian splatting on CUDA: gsplat against the PyTorch path on the same scene (images and alphas must agree
    within SPLAT_TOLERANCE, else the row fails), and forward + backward seconds of each; gsplat's are the row's."""
    import torch

    from backend import external
    from backend.render.camera import orbit_cameras
    from backend.render.splat import SplatConfig, render_gaussians

    if not device.startswith("cuda"):
        return {"skipped": "gsplat runs on CUDA only"}
    if not external.HAS_GSPLAT:
        return {"skipped": "gsplat is not installed (pip install -e '.[gsplat]' on the CUDA machine)"}
    s = settings.splat
    g = torch.Generator().manual_seed(0)
    n = s["gaussians"]
    direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    scene = [direction * 0.5 * torch.rand(n, 1, generator=g) ** (1 / 3),     # means in a ball of radius 0.5
             0.03 * torch.exp(0.3 * torch.randn(n, 3, generator=g)),        # scales
             torch.randn(n, 4, generator=g),                                 # quats
             0.1 + 0.8 * torch.rand(n, generator=g),                         # opacities
             torch.rand(n, 3, generator=g)]                                  # colours
    scene = [t.to(device).requires_grad_() for t in scene]
    cameras = orbit_cameras(torch.linspace(0, 270, s["views"]), torch.full((s["views"],), 15.0), 2.5, device=device)
    background = torch.tensor([0.2, 0.3, 0.4], device=device)

    def render(impl: str):
        return render_gaussians(*scene, cameras, s["size"], background=background,
                                config=SplatConfig(implementation=impl))

    def step(impl: str):
        def run():
            out = render(impl)
            (out.image.mean() + out.alpha.mean()).backward()
        return run

    with torch.no_grad():
        ours, theirs = render("torch"), render("gsplat")
    image_diff = float((ours.image - theirs.image).abs().max())
    alpha_diff = float((ours.alpha - theirs.alpha).abs().max())
    if max(image_diff, alpha_diff) > SPLAT_TOLERANCE:
        raise RuntimeError(f"gsplat and the PyTorch splatting disagree: max |image diff| {image_diff:.4f}, "
                           f"|alpha diff| {alpha_diff:.4f} (tolerance {SPLAT_TOLERANCE})")
    times = {impl: _median_seconds(step(impl), s["repeats"], device) for impl in ("gsplat", "torch")}
    return {"seconds": times["gsplat"],
            "detail": {"gaussians": n, "size": s["size"], "views": s["views"], "max_image_diff": image_diff,
                       "max_alpha_diff": alpha_diff, "forward_backward_seconds": times}}


JOB_FUNCTIONS = {"render": job_render, "stylize": job_stylize, "restyle": job_restyle, "generate": job_generate,
                 "index": job_index, "search": job_search, "segment": job_segment, "splat": job_splat,
        "reconstruct": job_reconstruct}
BOUNDED_JOBS = ("stylize", "restyle")
"""Jobs that take a budget and project their full run when it runs out."""


def run_job(name: str, settings: Settings, device: str, budget_s: float) -> Row:
    """One job in this process: a Row, 'skipped' for a missing module, 'failed' for any other error."""
    for path in (str(BENCHMARKS), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    target, limit = TARGETS.get(name, ("", None))
    fn = JOB_FUNCTIONS[name]
    try:
        out = fn(settings, device, budget_s) if name in BOUNDED_JOBS else fn(settings, device)
    except ModuleNotFoundError as exc:
        return Row(name, "skipped", target=target, limit_s=limit,
                   why=f"module {exc.name!r} is not installed (bundle it: python build.py gpu-bundle)")
    except Exception as exc:  # noqa: BLE001 (any error of a job is its row's failure, the others still run)
        return Row(name, "failed", target=target, limit_s=limit, why=f"{type(exc).__name__}: {exc}")
    if "skipped" in out:  # the job does not apply here (e.g. a CUDA-only comparison on the CPU)
        return Row(name, "skipped", target=target, limit_s=limit, why=out["skipped"])
    seconds = float(out["seconds"])
    met = None if (limit is None or settings.tiny) else seconds < limit
    return Row(name, "ok", seconds=seconds, how=out.get("how", "measured"), target=target, limit_s=limit, met=met,
               detail=out.get("detail", {}))


def run_job_isolated(name: str, settings: Settings, device: str, timeout_s: float, env: dict) -> Row:
    """One job in its own process, killed after `timeout_s` (a hung kernel or a slow job cannot stall the rest)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--job", name, "--device", device,
           "--job-budget", f"{max(timeout_s - 25.0, 5.0):.0f}"] + (["--tiny"] if settings.tiny else [])
    target, limit = TARGETS.get(name, ("", None))
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return Row(name, "failed", target=target, limit_s=limit,
                   why=f"did not end within its bound of {timeout_s:.0f} s")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return Row(name, "failed", target=target, limit_s=limit,
                   why=f"exit {done.returncode}: {' | '.join(tail) or 'no output'}")
    return Row(**json.loads(lines[-1]))


# ------------------------------------------------------------------------------------------------- preparation


def has_module(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _pip(args: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def gaussian_renderer_exists() -> bool:
    """A Gaussian renderer is in the repo when a backend module imports gsplat."""
    return any(re.search(r"^\s*(import|from)\s+gsplat", p.read_text(errors="ignore"), re.M)
               for p in (ROOT / "backend").rglob("*.py"))


def prepare(bundle: Path, deadline: float) -> tuple[list[Item], Path]:
    """Makes the CUDA paths' packages importable: present, from the bundle's wheels, or built from its source.

    Installs go to `<bundle>/site` (added to sys.path and to the jobs' PYTHONPATH); nothing is fetched."""
    site = bundle / "site"
    if site.is_dir() and str(site) not in sys.path:  # an earlier check's installs
        sys.path.insert(0, str(site))
    items: list[Item] = []
    wheels = sorted((bundle / "wheels").glob("*.whl"))
    missing = [(dist, module) for dist, module in BUNDLED if not has_module(module)]
    items += [Item(dist, "present") for dist, module in BUNDLED if (dist, module) not in missing]
    to_install, unbundled = [], []
    for dist, module in missing:
        key = dist.replace("-", "_").lower()
        found = [w for w in wheels if w.name.split("-")[0].lower() == key]
        (to_install.append((dist, found[-1])) if found else unbundled.append(dist))
    items += [Item(d, "skipped", f"not installed and no wheel in {bundle / 'wheels'} (no network on the GPU "
                                 "machines: run `python build.py gpu-bundle` where there is, and carry the folder)")
              for d in unbundled]
    if to_install:
        done = _pip(["install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir", "--upgrade",
                     "--target", str(site), *[str(w) for _, w in to_install]], timeout=max(deadline - time.time(), 10))
        status = "installed" if done.returncode == 0 else "failed"
        why = "" if done.returncode == 0 else done.stderr.strip().splitlines()[-1:]
        items += [Item(d, status, f"{w.name}" + (f": {why}" if why else "")) for d, w in to_install]
    if site.is_dir() and str(site) not in sys.path:
        sys.path.insert(0, str(site))
        importlib.invalidate_caches()
    items.append(prepare_nvdiffrast(bundle, site, deadline))
    if gaussian_renderer_exists():
        items.append(Item("gsplat", "present") if has_module("gsplat") else
                     Item("gsplat", "skipped", "the Gaussian renderer needs gsplat: not installed and not bundled"))
    else:
        items.append(Item("gsplat", "skipped", "no Gaussian renderer in backend/ yet (no module imports gsplat)"))
    return items, site


def prepare_nvdiffrast(bundle: Path, site: Path, deadline: float) -> Item:
    if has_module("nvdiffrast"):
        return Item("nvdiffrast", "present")
    source = bundle / "nvdiffrast"
    if not (source / "setup.py").exists():
        return Item("nvdiffrast", "skipped", f"not installed and no source in {source} (run `python build.py "
                    "gpu-bundle` where there is network, and carry the folder); the torch rasterizer runs alone")
    import torch

    major, minor = torch.cuda.get_device_capability()
    env = {**os.environ, "TORCH_CUDA_ARCH_LIST": f"{major}.{minor}", "MAX_JOBS": str(os.cpu_count() or 4)}
    start = time.perf_counter()
    try:
        done = _pip(["install", "-q", "--no-index", "--no-deps", "--no-build-isolation", "--no-cache-dir",
                     "--target", str(site), str(source)], timeout=max(deadline - time.time(), 10), env=env)
    except subprocess.TimeoutExpired:
        return Item("nvdiffrast", "failed", "the build did not end within the check's budget")
    if done.returncode != 0:
        return Item("nvdiffrast", "failed", "build: " + " | ".join(done.stderr.strip().splitlines()[-4:]))
    if str(site) not in sys.path:
        sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    return Item("nvdiffrast", "built", f"from {source} for sm_{major}{minor} in {time.perf_counter() - start:.0f} s")


def cuda_test_files() -> list[Path]:
    """Test files (outside the add-on's) that mark a test `cuda` or `gpu`."""
    return sorted(p for p in (ROOT / "tests").rglob("test_*.py") if "addon" not in p.parts
                  and re.search(r"pytest\.mark\.(cuda|gpu)\b", p.read_text(errors="ignore")))


def run_cuda_tests(env: dict, timeout_s: float) -> dict:
    files = cuda_test_files()
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "cuda or gpu",
           *[str(f) for f in files]]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "why": f"did not end within {timeout_s:.0f} s", "files": len(files)}
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors)", done.stdout)}
    errors = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    failed = done.returncode not in (0, 5) or errors
    skips = [line.split(" ", 2)[-1] for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    return {"status": "failed" if failed else "ok", "files": len(files), "passed": counts.get("passed", 0),
            "failed": errors,
            "skipped": counts.get("skipped", 0), "skip_reasons": skips,
            "seconds": round(time.perf_counter() - start, 1), "output_tail": done.stdout[-3000:]}


# ------------------------------------------------------------------------------------------------------ report


def device_facts(device: str) -> dict:
    facts = {"python": platform.python_version(), "machine": platform.machine(), "device": device}
    try:
        import torch
    except ImportError:
        return facts
    facts["torch"] = torch.__version__
    if device.startswith("cuda") and torch.cuda.is_available():
        facts.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                     capability=".".join(map(str, torch.cuda.get_device_capability(0))))
    return facts


def build_report(rows: list[Row], prepared: list[Item], tests: dict | None, device: dict, settings: Settings,
                 seconds: float) -> dict:
    """The JSON: every row, what was prepared, the tests, what was skipped and why, and `ok` (nothing failed)."""
    skipped = [{"what": i.name, "why": i.detail} for i in prepared if i.status == "skipped"]
    skipped += [{"what": r.job, "why": r.why} for r in rows if r.status == "skipped"]
    if tests is None:
        skipped.append({"what": "cuda tests", "why": "no CUDA device in this run"})
    else:
        skipped += [{"what": "cuda test", "why": why} for why in tests.get("skip_reasons", [])]
    failures = [i.name for i in prepared if i.status == "failed"] + [r.job for r in rows if r.status == "failed"]
    if tests is not None and tests["status"] != "ok":
        failures.append("cuda tests")
    return {"schema": SCHEMA, "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "settings": "tiny" if settings.tiny else "full", "device": device,
            "prepared": [asdict(i) for i in prepared], "tests": tests, "jobs": [asdict(r) for r in rows],
            "skipped": skipped, "failures": failures, "ok": not failures, "seconds": round(seconds, 1)}


def format_table(report: dict) -> str:
    """job | seconds | target | met? as a Markdown table (benchmarks/README.md takes it as it is)."""
    lines = ["| job | seconds | target | met? |", "| --- | --- | --- | --- |"]
    for row in report["jobs"]:
        if row["status"] != "ok":
            seconds = f"{row['status']}: {row['why']}"
        else:
            seconds = f"{row['seconds']:.4g}" + ("" if row["how"] == "measured" else f" ({row['how']})")
        met = {True: "yes", False: "NO", None: "n/a (tiny)" if report["settings"] == "tiny" and row["target"]
               else "-"}[row["met"]]
        lines.append(f"| {row['job']} | {seconds} | {row['target'] or '-'} | {met} |")
    return "\n".join(lines)


def print_summary(report: dict) -> None:
    dev = report["device"]
    print(f"\ngpu-check {report['date']} on {dev.get('gpu', dev['device'])} (torch {dev.get('torch')}, "
          f"{report['settings']} settings, {report['seconds']} s)")
    for item in report["prepared"]:
        print(f"  prepare {item['name']}: {item['status']}" + (f" ({item['detail']})" if item["detail"] else ""))
    tests = report["tests"]
    if tests:
        print(f"  cuda tests: {tests['status']} ({tests.get('passed', 0)} passed, {tests.get('failed', 0)} failed, "
              f"{tests.get('skipped', 0)} skipped)" + (f": {tests['why']}" if tests.get("why") else ""))
    for skip in report["skipped"]:
        print(f"  SKIPPED {skip['what']}: {skip['why']}")
    print(format_table(report))
    print("FAILED: " + ", ".join(report["failures"]) if report["failures"] else "every CUDA path that ran passed")


# ------------------------------------------------------------------------------------------------------ bundle

DEVICE_PYTHON = "3.12"
"""The lent GPU image's python3 (KINDS.md): the wheels are fetched for it, not for this interpreter."""
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64", "linux_x86_64")


def bundle(dest: Path, nvdiffrast_src: str = NVDIFFRAST_GIT, python: str = DEVICE_PYTHON) -> list[Item]:
    """On a machine WITH network: `dest`/wheels (the BUNDLED packages, at the versions installed here, for the GPU
    image's Python on x86-64 Linux) and `dest`/nvdiffrast (its source, from git or a local checkout)."""
    import shutil
    from importlib.metadata import PackageNotFoundError, version

    items = []
    wheels = dest / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    platform_args = [a for p in PLATFORMS for a in ("--platform", p)]
    for dist, _module in BUNDLED:
        try:
            spec = f"{dist}=={version(dist)}"
        except PackageNotFoundError:
            spec = dist
        done = _pip(["download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", python,
                     "--implementation", "cp", *platform_args, "-d", str(wheels), spec], timeout=300)
        items.append(Item(spec, "installed" if done.returncode == 0 else "failed",
                          "" if done.returncode == 0 else done.stderr.strip().splitlines()[-1]))
    target = dest / "nvdiffrast"
    if target.exists():
        shutil.rmtree(target)
    source = Path(nvdiffrast_src)
    with __import__("tempfile").TemporaryDirectory() as tmp:
        if not (source / "setup.py").exists():  # a URL or a bare repository: clone it
            # Only the build's files are checked out (a mirror may lack the large images of the docs).
            clone = subprocess.run(["git", "clone", "--depth", "1", "--no-checkout", nvdiffrast_src,
                                    f"{tmp}/nvdiffrast"], capture_output=True, text=True, timeout=300)
            if clone.returncode == 0:
                clone = subprocess.run(["git", "-C", f"{tmp}/nvdiffrast", "checkout", "HEAD", "--",
                                        *NVDIFFRAST_FILES], capture_output=True, text=True, timeout=60)
            if clone.returncode != 0:
                items.append(Item("nvdiffrast", "failed", clone.stderr.strip().splitlines()[-1]))
                return items
            source = Path(tmp) / "nvdiffrast"
        target.mkdir(parents=True)
        for name in NVDIFFRAST_FILES:
            path = source / name
            if path.is_dir():
                shutil.copytree(path, target / name)
            elif path.exists():
                shutil.copy2(path, target / name)
    ok = (target / "setup.py").exists()
    items.append(Item("nvdiffrast", "installed" if ok else "failed",
                      f"source from {nvdiffrast_src}" if ok else f"no setup.py in {nvdiffrast_src}"))
    return items


def main_bundle(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fill the GPU check's bundle (needs network): wheels/, nvdiffrast/")
    parser.add_argument("--out", default=str(ROOT / ".gpu"))
    parser.add_argument("--nvdiffrast-src", default=NVDIFFRAST_GIT, help="git URL or a local checkout")
    args = parser.parse_args(argv)
    items = bundle(Path(args.out), args.nvdiffrast_src)
    for item in items:
        print(f"  {item.name}: {'ok' if item.status != 'failed' else 'FAILED'} {item.detail}".rstrip())
    size = sum(p.stat().st_size for p in Path(args.out).rglob("*") if p.is_file()) / 2**20
    print(f"gpu-bundle: {args.out} holds {size:.1f} MiB; carry it to the GPU machine (run's carry: .gpu)")
    return 1 if any(i.status == "failed" for i in items) else 0


# -------------------------------------------------------------------------------------------------------- main


def no_cuda_reason(device: str) -> str | None:
    """Why this machine cannot run the check on `device`, or None when it can."""
    if not device.startswith("cuda"):
        return None
    if not has_module("torch"):
        return f"torch is not installed for {sys.executable}"
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device"
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --tiny: the plumbing only)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: no target applies")
    parser.add_argument("--jobs", default=",".join(JOBS), help=f"comma-separated, of {', '.join(JOBS)}")
    parser.add_argument("--report", default=str(RESULTS), help="write the JSON here")
    parser.add_argument("--bundle", default=str(ROOT / ".gpu"), help="wheels/ and nvdiffrast/ made by gpu-bundle")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for the whole check")
    parser.add_argument("--in-process", action="store_true", help="run the jobs here, not one process each")
    parser.add_argument("--skip-tests", action="store_true", help="skip the tests marked cuda")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--job-budget", type=float, default=60.0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["bundle"]:
        return main_bundle(sys.argv[2:])
    args = parse_args(argv)
    settings = Settings(tiny=args.tiny)
    if args.job:  # a job's own process (run_job_isolated): one JSON line
        row = run_job(args.job, settings, args.device, args.job_budget)
        print(json.dumps(asdict(row)))
        return 0
    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    unknown = [j for j in jobs if j not in JOBS]
    if unknown:
        print(f"gpu-check: unknown job(s) {', '.join(unknown)}; use some of {', '.join(JOBS)}", file=sys.stderr)
        return 2
    reason = no_cuda_reason(args.device)
    if reason:
        print(f"gpu-check: no CUDA GPU here ({reason}); nothing to check")
        return 0
    started = time.time()
    deadline = started + args.budget
    prepared: list[Item] = []
    tests = None
    site = None
    if args.device.startswith("cuda"):
        # Preparation may build nvdiffrast: it gets what is left after the tests' and the jobs' minimum.
        prepared, site = prepare(Path(args.bundle), deadline - TESTS_CAP_S - JOB_FLOOR_S * len(jobs))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(
        p for p in (str(site) if site else "", str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    if args.device.startswith("cuda"):
        if not args.skip_tests:
            tests = run_cuda_tests(env, min(TESTS_CAP_S, deadline - time.time() - JOB_FLOOR_S * len(jobs)))
    rows = []
    for index, name in enumerate(jobs):
        left = deadline - time.time() - JOB_FLOOR_S * (len(jobs) - index - 1)
        bound = min(JOB_CAP_S[name], left)
        if bound < JOB_FLOOR_S:
            target, limit = TARGETS.get(name, ("", None))
            rows.append(Row(name, "skipped", target=target, limit_s=limit,
                            why=f"out of time: {max(left, 0):.0f} s of the {args.budget:.0f} s budget left"))
            continue
        print(f"gpu-check: {name} (bound {bound:.0f} s)", flush=True)
        rows.append(run_job(name, settings, args.device, bound) if args.in_process
                    else run_job_isolated(name, settings, args.device, bound, env))
    report = build_report(rows, prepared, tests, device_facts(args.device), settings, time.time() - started)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    print_summary(report)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
