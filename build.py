#!/usr/bin/env python3
"""Atelier's one task runner. Standard library only, so it runs on a fresh machine.

    python build.py setup     create .venv (backend, torch) and one Blender environment per supported bpy (bpy +
                              pyzmq, no torch): .venv-blender (5.0.1, the demo's), .venv-blender-4.5, .venv-blender-4.2
    python build.py test      setup, then the backend tests, then the add-on tests in each of those Blenders
    python build.py demo      setup, then the main job end to end: through a real backend, then through the
                              add-on inside the Blender module (tools/blender_demo.py) -> demo_out/
    python build.py bench     setup, then run the benchmarks in benchmarks/
    python build.py domain-clip   setup, then train the domain CLIP into backend/models/weights/domain_clip.pt
    python build.py generator     setup, then train the shipped shape generator into
                                  backend/models/weights/generator_domain.pt (12 to 20 CPU minutes on 2 cores)
    python build.py points        setup, then train the shipped point-cloud encoder (aligned to the domain CLIP) into
                                  backend/models/weights/points_domain.pt (about 45 CPU minutes, one thread)
    python build.py extension the Blender extension zips into dist/ (see tools/build_extension.py)
    python build.py gpu-check on a CUDA GPU: prepare nvdiffrast (from .gpu/), run the tests marked cuda, time every
                              job; one table and benchmarks/results/gpu_check.json, exit 1 when a CUDA path failed;
                              without a GPU one line, exit 0 (no set-up: it runs where the GPU's torch is; see
                              benchmarks/gpu_check.py)
    python build.py gpu-bundle where there is network: wheels and nvdiffrast's source into .gpu/ (the lent GPU
                              machines reach no network; carry .gpu there)

Environments are re-installed only when what they are built from changes (a stamp file keeps the hash).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"

# torch / torchvision pins per machine architecture (the code runs on any torch >= 2.4).
TORCH_PINS = {
    "x86_64": ("torch==2.14.1", "torchvision==0.29.1"),
    "amd64": ("torch==2.14.1", "torchvision==0.29.1"),
    "aarch64": ("torch==2.9.1", "torchvision==0.24.1"),
    "arm64": ("torch==2.9.1", "torchvision==0.24.1"),
}
# The add-on's world: Blender's Python module and the one package the add-on bundles. No torch. The add-on tests run in
# every supported Blender: the 4.2 and 4.5 LTS and 5.0 (the demo uses 5.0). bpy 4.2-5.0 are built for Python 3.11.
BLENDER_MATRIX = {"5.0.1": ROOT / ".venv-blender", "4.5.15": ROOT / ".venv-blender-4.5",
                  "4.2.23": ROOT / ".venv-blender-4.2"}
"""bpy version -> its environment; the first is the demo's."""
BLENDER_TOOLS = ("pyzmq>=26", "pytest>=8", "pytest-timeout>=2.3")
BLENDER_PYTHON = (3, 11)


def log(message: str) -> None:
    print(f"[build] {message}", flush=True)


def run(cmd: list[str], **kwargs) -> None:
    log(" ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def find_python(version: tuple[int, int]) -> str:
    """An interpreter of exactly `version`: this one, or pythonX.Y on PATH."""
    if sys.version_info[:2] == version:
        return sys.executable
    name = f"python{version[0]}.{version[1]}"
    found = shutil.which(name) or (shutil.which("py") and name)
    if not found:
        sys.exit(f"[build] error: the Blender environment needs Python {version[0]}.{version[1]} (bpy 5.0.1); "
                 f"install it or run build.py with it")
    return found


def stamp_matches(venv: Path, fingerprint: str) -> bool:
    stamp = venv / ".atelier-stamp"
    return venv_python(venv).exists() and stamp.exists() and stamp.read_text() == fingerprint


def write_stamp(venv: Path, fingerprint: str) -> None:
    (venv / ".atelier-stamp").write_text(fingerprint)


def make_venv(venv: Path, python: str) -> Path:
    if not venv_python(venv).exists():
        run([python, "-m", "venv", str(venv)])
        run([venv_python(venv), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    return venv_python(venv)


def setup_backend() -> Path:
    machine = platform.machine().lower()
    pins = TORCH_PINS.get(machine)
    if pins is None:
        sys.exit(f"[build] error: no torch pin for machine {machine!r}; add one to TORCH_PINS in build.py")
    fingerprint = hashlib.sha256(((ROOT / "pyproject.toml").read_bytes() + repr(pins).encode())).hexdigest()
    if stamp_matches(VENV, fingerprint):
        warm_raster_kernel(venv_python(VENV))
        return venv_python(VENV)
    if sys.version_info[:2] < (3, 11):
        sys.exit("[build] error: the backend needs Python >= 3.11; run build.py with python3.11 or newer")
    python = make_venv(VENV, sys.executable)
    run([python, "-m", "pip", "install", *pins])
    run([python, "-m", "pip", "install", "-e", f"{ROOT}[test]"])
    write_stamp(VENV, fingerprint)
    warm_raster_kernel(python)
    return python


def warm_raster_kernel(python: Path) -> None:
    """Builds the compiled CPU rasterizer now (about a minute, once per source and torch version; cached in
    backend/render/kernels/build/), so tests and jobs don't pay it. Where it cannot build, the renderer falls back
    to pure PyTorch: the line it prints says so, and set-up goes on."""
    code = ("import logging; logging.basicConfig(level=logging.INFO, format='[build] %(message)s'); "
            "from backend.render.kernel import load_kernel; load_kernel('auto')")
    result = subprocess.run([str(python), "-c", code], cwd=ROOT)
    if result.returncode != 0:
        log("the compiled rasterizer could not be checked; the renderer will use pure PyTorch")


def setup_blender(version: str) -> Path:
    """The environment of bpy `version` (BLENDER_MATRIX), made or refreshed when its packages change."""
    venv, packages = BLENDER_MATRIX[version], (f"bpy=={version}", *BLENDER_TOOLS)
    fingerprint = hashlib.sha256(repr(packages).encode()).hexdigest()
    if stamp_matches(venv, fingerprint):
        return venv_python(venv)
    python = make_venv(venv, find_python(BLENDER_PYTHON))
    run([python, "-m", "pip", "install", *packages])
    write_stamp(venv, fingerprint)
    return python


def cmd_setup(_args) -> tuple[Path, dict[str, Path]]:
    """The backend's python and each Blender version's python (BLENDER_MATRIX order: the demo's first)."""
    return setup_backend(), {version: setup_blender(version) for version in BLENDER_MATRIX}


def cmd_test(args) -> None:
    python, blenders = cmd_setup(args)
    blender_python = next(iter(blenders.values()))
    env = {**os.environ, "ATELIER_BLENDER_PYTHON": str(blender_python)}
    failed = False
    backend_tests = [str(p) for p in sorted((ROOT / "tests").iterdir()) if p.is_dir() and p.name != "addon"
                     and any(p.glob("test_*.py"))]
    result = subprocess.run([str(python), "-m", "pytest", "-q", "-ra", *backend_tests, *args.pytest_args], cwd=ROOT, env=env)
    failed |= result.returncode != 0
    addon_tests = ROOT / "tests" / "addon"
    if addon_tests.is_dir() and any(addon_tests.glob("test_*.py")):
        # The add-on's tests run where Blender's Python runs: bpy and pyzmq, no torch; once per supported Blender.
        for version, bpy_python in blenders.items():
            log(f"add-on tests in bpy {version}")
            run_env = {**env, "ATELIER_BACKEND_PYTHON": str(python), "ATELIER_BLENDER_PYTHON": str(bpy_python),
                       "ATELIER_EXPECT_BPY": version}
            result = subprocess.run([str(bpy_python), "-m", "pytest", "-q", "-ra", str(addon_tests),
                                     *args.pytest_args], cwd=ROOT, env=run_env)
            log(f"add-on tests in bpy {version}: exit {result.returncode}")
            failed |= result.returncode != 0
    if failed:
        sys.exit(1)


def cmd_demo(args) -> None:
    python, blenders = cmd_setup(args)
    blender_python = next(iter(blenders.values()))
    out = ROOT / "demo_out"
    # Stage 1: render jobs through a real backend process (the wire, the renderer) -> demo_out/render_views/.
    run([python, "-m", "tools.render_demo", "--out", str(out / "render_views")], cwd=ROOT)
    # Stage 2: the main job through the add-on inside the real Blender module (headless): the add-on starts
    # the backend from .venv -> demo_out/scene.blend, demo_out/renders/*.png, demo_out/blender_demo.json.
    env = {**os.environ, "ATELIER_BACKEND_PYTHON": str(python)}
    run([blender_python, str(ROOT / "tools" / "blender_demo.py"), "--out", str(out), "--backend-python", str(python)],
        cwd=ROOT, env=env)


def cmd_bench(args) -> None:
    python, _ = cmd_setup(args)
    run([python, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test,bench]"])
    for script in sorted((ROOT / "benchmarks").glob("*_bench.py")):
        run([python, str(script), "--report", str(ROOT / "benchmarks" / "results" / f"{script.stem}.json")], cwd=ROOT)


def cmd_extension(args) -> None:
    """The Blender extension zips (cp311 and cp312-abi3 builds); see tools/build_extension.py."""
    from tools.build_extension import run as build_extension

    build_extension(args)


def cmd_domain_clip(args) -> None:
    python = setup_backend()
    # Seeded CPU training on the procedural world (about 10 minutes on 2 cores); see backend/models/domain_train.py.
    # -c, not -m: the render workers unpickle the trainer's functions by their module's real name.
    run([python, "-c", "import sys; from backend.models.domain_train import main; sys.exit(main())", *args.extra],
        cwd=ROOT)


def cmd_generator(args) -> None:
    python = setup_backend()
    # Seeded CPU training of the shipped generator on the procedural world (backend/generate/world_train.py);
    # the time it took is written beside the weights (generator_domain.pt.json).
    run([python, "-m", "backend.generate.world_train", *args.extra], cwd=ROOT)


def cmd_points(args) -> None:
    python = setup_backend()
    # Seeded CPU training of the shipped point encoder against the domain CLIP on world shapes
    # (backend/retrieve/train_points.py); figures and the time it took go beside the weights (points_domain.pt.json).
    out = ["--out", str(ROOT / "backend" / "models" / "weights" / "points_domain.pt")]
    run([python, "-m", "backend.retrieve.train_points", "--threads", "1",
         *([] if "--out" in args.extra else out), *args.extra], cwd=ROOT)


def gpu_python() -> str:
    """The interpreter that has torch: this one (a GPU machine's own), else .venv's, else this one (which says so)."""
    import importlib.util

    if importlib.util.find_spec("torch") is not None or not venv_python(VENV).exists():
        return sys.executable
    return str(venv_python(VENV))


def cmd_gpu_check(args) -> None:
    # No set-up: a lent GPU machine has no network; it runs under the interpreter that holds its CUDA torch.
    result = subprocess.run([gpu_python(), str(ROOT / "benchmarks" / "gpu_check.py"), *args.extra], cwd=ROOT)
    sys.exit(result.returncode)


def cmd_gpu_bundle(args) -> None:
    result = subprocess.run([gpu_python(), str(ROOT / "benchmarks" / "gpu_check.py"), "bundle", *args.extra],
                            cwd=ROOT)
    sys.exit(result.returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="create both environments").set_defaults(fn=cmd_setup)
    sub.add_parser("test", help="setup, then run the tests (extra arguments go to pytest)").set_defaults(fn=cmd_test)
    sub.add_parser("demo", help="setup, then run the demo into demo_out/").set_defaults(fn=cmd_demo)
    sub.add_parser("bench", help="setup, then run every benchmark").set_defaults(fn=cmd_bench)
    sub.add_parser("domain-clip", add_help=False,
                   help="train the domain CLIP and write its checkpoint (arguments, --help included, go to "
                   "backend.models.domain_train.main, e.g. --out FILE)").set_defaults(fn=cmd_domain_clip)
    sub.add_parser("generator", add_help=False,
                   help="train the shipped shape generator (arguments go to backend.generate.world_train.main, e.g. "
                   "--threads 2)").set_defaults(fn=cmd_generator)
    sub.add_parser("points", add_help=False,
                   help="train the shipped point-cloud encoder (arguments go to backend.retrieve.train_points.main, "
                   "e.g. --steps 500)").set_defaults(fn=cmd_points)
    sub.add_parser("gpu-check", add_help=False,
                   help="on a CUDA GPU: prepare, run the cuda tests, time every job (arguments, --help included, go "
                   "to benchmarks/gpu_check.py, e.g. --report FILE)").set_defaults(fn=cmd_gpu_check)
    sub.add_parser("gpu-bundle", add_help=False,
                   help="with network: wheels and nvdiffrast's source into .gpu/ for gpu-check (arguments go to "
                   "benchmarks/gpu_check.py bundle)").set_defaults(fn=cmd_gpu_bundle)
    from tools.build_extension import add_arguments as extension_arguments
    extension_arguments(sub.add_parser("extension", help="build the Blender extension zips into dist/")).set_defaults(
        fn=cmd_extension)
    args, extra = parser.parse_known_args()
    if extra and args.command not in ("test", "domain-clip", "generator", "points", "gpu-check", "gpu-bundle"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.pytest_args = extra
    args.extra = extra
    args.fn(args)


if __name__ == "__main__":
    main()
