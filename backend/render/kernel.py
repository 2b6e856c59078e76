"""The compiled CPU rasterizer kernel (`kernels/raster_cpu.cpp`): built on first use, or pure PyTorch.

The C++ source is compiled by torch.utils.cpp_extension (a C++ compiler and ninja; `python build.py setup`
installs the `ninja` package and warms the build) into `kernels/build/<hash of the source, torch, Python and
platform>/` (see `cache_dir`), so a changed source or torch builds afresh (about a minute) and an unchanged one
loads in milliseconds. Where it cannot be built (no compiler, no ninja, a build error) `load_kernel` logs one line
and returns None, and the rasterizer runs `raster_torch` (same results, slower). `ATELIER_RASTER_KERNEL=pure`
(or `RasterizerConfig(kernel="pure")`) forces the pure path; `=compiled` makes a failed build an error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import sys
from pathlib import Path
from types import ModuleType

import torch

from backend.errors import DependencyMissingError

log = logging.getLogger("atelier.render")

SOURCE = Path(__file__).parent / "kernels" / "raster_cpu.cpp"
KERNEL_CHOICES = ("auto", "compiled", "pure")
ENV_VAR = "ATELIER_RASTER_KERNEL"
CACHE_ENV_VAR = "ATELIER_RASTER_KERNEL_CACHE"
CFLAGS = ["-O3", "-ffp-contract=off"]
"""No fused multiply-adds: visibility must round exactly as raster_torch's float32 ops do."""

_loaded: dict[str, ModuleType | None] = {}
_errors: dict[str, str] = {}


def kernel_choice(configured: str = "auto") -> str:
    """The effective choice: `$ATELIER_RASTER_KERNEL` when set, else `configured`."""
    choice = os.environ.get(ENV_VAR) or configured
    if choice not in KERNEL_CHOICES:
        source = f"${ENV_VAR}" if os.environ.get(ENV_VAR) else "RasterizerConfig.kernel"
        raise ValueError(f"{source} must be one of {KERNEL_CHOICES}, got {choice!r}")
    return choice


def cache_dir(source: Path = SOURCE) -> Path:
    """Where the kernel built from `source` lives, keyed by the source, torch, Python and the platform:
    `$ATELIER_RASTER_KERNEL_CACHE/<hash>` when set, else `build/<hash>` beside the source (git-ignored; one
    build per checkout, whatever $ATELIER_HOME or $HOME a test or a job points elsewhere), else, where the
    package is read-only, `$ATELIER_HOME/cache/raster_kernel/<hash>`."""
    build = (torch.__version__, sys.version_info[:2], sys.platform, platform.machine(), CFLAGS)
    digest = hashlib.sha256(source.read_bytes() + repr(build).encode()).hexdigest()[:16]
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override).expanduser() / digest
    local = source.parent / "build"
    writable = local if local.exists() else source.parent
    if os.access(writable, os.W_OK):
        return local / digest
    home = Path(os.environ.get("ATELIER_HOME") or Path.home() / ".cache" / "atelier").expanduser()
    return home / "cache" / "raster_kernel" / digest


def _ninja_on_path() -> None:
    """torch runs `ninja` from PATH; the `ninja` package's binary sits beside this Python, often not on PATH."""
    if shutil.which("ninja"):
        return
    candidates = [Path(sys.executable).parent]
    try:
        import ninja  # the PyPI package (build.py setup installs it)

        if ninja.BIN_DIR:
            candidates.insert(0, Path(ninja.BIN_DIR))
    except (ImportError, AttributeError):
        pass
    for folder in candidates:
        if (folder / "ninja").exists() or (folder / "ninja.exe").exists():
            os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"
            return


def build_kernel(source: Path = SOURCE, verbose: bool = False) -> ModuleType:
    """Compiles (or loads the cached build of) `source`; raises DependencyMissingError saying why not."""
    # Importing it on a machine without CUDA logs a warning about CUDA_HOME that concerns only CUDA builds.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import cpp_extension

    if not source.is_file():
        raise DependencyMissingError(f"the compiled rasterizer's source {source} is missing",
                                     hint=f"reinstall the package (pip install -e .), or set {ENV_VAR}=pure")
    _ninja_on_path()
    try:
        cpp_extension.verify_ninja_availability()
    except RuntimeError as exc:
        raise DependencyMissingError("ninja is not installed, so the compiled rasterizer cannot be built",
                                     hint="pip install ninja (python build.py setup does), or set "
                                          f"{ENV_VAR}=pure") from exc
    build_dir = cache_dir(source)
    name = f"atelier_raster_cpu_{build_dir.name}"
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
        return cpp_extension.load(name=name, sources=[str(source)], extra_cflags=CFLAGS, build_directory=str(build_dir),
                                  verbose=verbose)
    except Exception as exc:  # a compiler error, a missing compiler or header, an unwritable cache: "cannot build here"
        raise DependencyMissingError(f"the compiled rasterizer failed to build: {str(exc).strip()[-400:]}",
                                     hint="install a C++ compiler (g++) and the Python headers, or set "
                                          f"{ENV_VAR}=pure") from exc


def load_kernel(configured: str = "auto", source: Path = SOURCE) -> ModuleType | None:
    """The kernel module, or None for the pure-PyTorch path. Builds once per checkout (`cache_dir`) and loads
    once per process. `configured`: "auto" falls back with one logged line, "compiled" raises, "pure" skips."""
    choice = kernel_choice(configured)
    if choice == "pure":
        return None
    key = str(source)
    if key not in _loaded:
        try:
            _loaded[key] = build_kernel(source)
            log.info("rasterizer: compiled CPU kernel (%s)", cache_dir(source))
        except DependencyMissingError as exc:
            _loaded[key] = None
            _errors[key] = str(exc)
            log.warning("rasterizer: pure-PyTorch path (%s)", exc)
    if _loaded[key] is None and choice == "compiled":
        raise DependencyMissingError(f"the compiled rasterizer was asked for but cannot be used: {_errors[key]}",
                                     hint=f"install g++ and ninja, or use kernel='auto' / {ENV_VAR}=pure")
    return _loaded[key]
