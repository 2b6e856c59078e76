"""`python build.py extension`: the Blender extension zips of `blender_addon/`. Standard library only.

One zip cannot serve Blenders with Python 3.11 and 3.13, because pyzmq is a compiled wheel, so it writes
two builds of the same add-on:

    atelier-<version>-cp311.zip       cp311 wheels, Blender 4.2.4 up to (not including) 5.1.0
    atelier-<version>-cp312-abi3.zip  cp312-abi3 wheels (stable ABI: Python 3.12+), Blender 5.1.0 and later

each with pyzmq wheels for Windows x64/arm64, macOS (universal2: arm64 and x64) and Linux x64/arm64,
downloaded with `pip download --only-binary=:all: --platform ... --python-version ...` into a cache folder
(kept between runs), plus `shared_protocol/` copied into the package with its imports made relative, so
the extension depends on nothing outside its folder. A build fails if anything in the zip imports
torch or the backend.

    python build.py extension                              # both builds, every platform, into dist/
    python build.py extension --builds cp311 --platforms host --out /tmp/ext   # quick, this machine only
"""

from __future__ import annotations

import argparse
import ast
import platform as _platform
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADDON = ROOT / "blender_addon"
PROTOCOL = ROOT / "shared_protocol"

PYZMQ = "pyzmq==27.3.0"
"""The one bundled dependency, pinned: the same release in every build."""

PLATFORMS: dict[str, tuple[str, ...]] = {
    "windows-x64": ("win_amd64",),
    "windows-arm64": ("win_arm64",),
    "macos-arm64": ("macosx_11_0_arm64",),
    "macos-x64": ("macosx_10_15_x86_64",),
    "linux-x64": ("manylinux_2_28_x86_64",),
    "linux-arm64": ("manylinux_2_28_aarch64",),
}
"""Blender platform -> the pip `--platform` tags that fetch a wheel for it (pip also accepts older
manylinux and macOS versions and universal2 for these)."""


@dataclass(frozen=True)
class Build:
    python_version: str
    """pip --python-version."""
    abi: str
    """pip --abi: cp311, or abi3 (the stable ABI, one wheel for Python 3.12 and later)."""
    blender_min: str
    blender_max: str | None
    """First Blender version the build does NOT support (exclusive), or None."""


BUILDS: dict[str, Build] = {
    # 4.2.4 is the first 4.2 that loads macOS universal2 wheels; 5.1 moves Blender to Python 3.13.
    "cp311": Build("3.11", "cp311", "4.2.4", "5.1.0"),
    "cp312-abi3": Build("3.12", "abi3", "5.1.0", None),
}

FORBIDDEN_IMPORTS = ("torch", "torchvision", "open_clip", "backend", "trimesh", "xatlas", "nvdiffrast", "PIL")
"""Top-level modules nothing in the zip may import: Blender has none of them."""

_WHEEL_RE = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$")


class BuildError(RuntimeError):
    """A build that cannot finish; the message says what to do."""


def log(message: str) -> None:
    print(f"[extension] {message}", flush=True)


# -- platforms and wheels -------------------------------------------------------------------------------

def host_platform() -> str:
    """This machine as a Blender platform name, e.g. "linux-x64"."""
    system = {"linux": "linux", "darwin": "macos", "windows": "windows"}.get(_platform.system().lower())
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(_platform.machine().lower())
    if system is None or machine is None:
        raise BuildError(f"no Blender platform for {_platform.system()} {_platform.machine()}; name --platforms")
    return f"{system}-{machine}"


def wheel_platforms(filename: str) -> set[str]:
    """The Blender platforms a wheel file serves, from its platform tags."""
    match = _WHEEL_RE.match(filename)
    if match is None:
        return set()
    out = set()
    for tag in match["plat"].split("."):
        if tag == "win_amd64":
            out.add("windows-x64")
        elif tag == "win_arm64":
            out.add("windows-arm64")
        elif tag.startswith("macosx_"):
            if tag.endswith(("_arm64", "_universal2")):
                out.add("macos-arm64")
            if tag.endswith(("_x86_64", "_universal2", "_intel")):
                out.add("macos-x64")
        elif tag.startswith("manylinux") and tag.endswith("_x86_64"):
            out.add("linux-x64")
        elif tag.startswith("manylinux") and tag.endswith("_aarch64"):
            out.add("linux-arm64")
    return out


def wheel_matches(filename: str, build: Build, platform: str) -> bool:
    match = _WHEEL_RE.match(filename)
    name, version = PYZMQ.split("==")
    if match is None or match["name"].lower() != name or match["version"] != version:
        return False
    python_tag = "cp" + build.python_version.replace(".", "")
    return match["py"] == python_tag and match["abi"] == build.abi and platform in wheel_platforms(filename)


def fetch_wheel(build: Build, platform: str, cache: Path, offline: bool = False) -> Path:
    """The pyzmq wheel for `build` on `platform`: from `cache`, else downloaded into it with pip."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(p for p in cache.glob("*.whl") if wheel_matches(p.name, build, platform))
    if found:
        return found[-1]
    if offline:
        raise BuildError(f"no {PYZMQ} wheel for {platform} / {build.abi} in {cache} and --offline was given; "
                         f"run once with access to the package registry, or put the wheel there")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--implementation", "cp",
           "--python-version", build.python_version, "--abi", build.abi, "--dest", str(cache), "--quiet",
           "--disable-pip-version-check"]
    for tag in PLATFORMS[platform]:
        cmd += ["--platform", tag]
    cmd.append(PYZMQ)
    log(f"downloading {PYZMQ} for {platform} ({build.abi})")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"pip could not run to download {PYZMQ} for {platform}: {exc}") from exc
    found = sorted(p for p in cache.glob("*.whl") if wheel_matches(p.name, build, platform))
    if done.returncode != 0 or not found:
        detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise BuildError(
            f"the package registry did not provide {PYZMQ} for {platform} (Python {build.python_version}, "
            f"abi {build.abi}): {' | '.join(detail) or 'no matching wheel'}. Check the network or the pip "
            f"index settings, or put the wheel into {cache} and pass --offline")
    return found[-1]


# -- the package ----------------------------------------------------------------------------------------

def vendor_protocol(destination: Path) -> None:
    """Copies shared_protocol/ to `destination` with `from shared_protocol.x import y` made relative, so the
    copy is a sub-package of the add-on and never picks up another shared_protocol on sys.path."""
    destination.mkdir(parents=True, exist_ok=True)
    for source in sorted(PROTOCOL.glob("*.py")):
        text = source.read_text(encoding="utf-8")
        text = re.sub(r"^(\s*)from shared_protocol\.(\w+) import", r"\1from .\2 import", text, flags=re.M)
        text = re.sub(r"^(\s*)from shared_protocol import", r"\1from . import", text, flags=re.M)
        for node in ast.walk(ast.parse(text)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            if any(n.split(".")[0] == "shared_protocol" for n in names):
                raise BuildError(f"{source} imports shared_protocol in a form the build cannot make relative "
                                 f"(line {node.lineno}); write `from shared_protocol.module import name`")
        (destination / source.name).write_text(text, encoding="utf-8")


def build_manifest(build: Build, platforms: list[str], wheels: list[str]) -> str:
    """The add-on's manifest with this build's Blender range, platforms and wheels (and no [build] table)."""
    text = (ADDON / "blender_manifest.toml").read_text(encoding="utf-8")
    text = text.split("\n[build]", 1)[0].rstrip() + "\n"
    lines = [f'blender_version_min = "{build.blender_min}"']
    if build.blender_max:
        lines.append(f'blender_version_max = "{build.blender_max}"')
    lines.append("platforms = [" + ", ".join(f'"{p}"' for p in platforms) + "]")
    lines.append("wheels = [\n" + "".join(f'  "./wheels/{w}",\n' for w in wheels) + "]")
    text, count = re.subn(r'^blender_version_min = "[^"]*"$', "\n".join(lines), text, flags=re.M)
    if count != 1:
        raise BuildError("blender_addon/blender_manifest.toml must have one `blender_version_min = \"...\"` line")
    tomllib.loads(text)  # a TOML error here is a build bug
    return text


def _imports(tree: ast.AST) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            out.add(node.args[0].value.split(".")[0])
    return out


_FORBIDDEN_RE = re.compile(r"^\s*(?:import|from)\s+(%s)\b" % "|".join(FORBIDDEN_IMPORTS), re.M)


def check_imports(stage: Path) -> None:
    """BuildError when any Python file in the package or in its wheels imports a forbidden module."""
    bad = []
    for path in sorted(stage.rglob("*.py")):
        found = _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))) & set(FORBIDDEN_IMPORTS)
        bad += [f"{path.relative_to(stage)} imports {name}" for name in sorted(found)]
    for wheel in sorted(stage.rglob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.endswith(".py"):
                    text = archive.read(name).decode("utf-8", "replace")
                    bad += [f"{wheel.name}:{name} imports {m}" for m in sorted(set(_FORBIDDEN_RE.findall(text)))]
    if bad:
        raise BuildError("the extension would import modules Blender does not have: " + "; ".join(bad[:10]))


def stage_package(build_name: str, platforms: list[str], stage: Path, cache: Path, offline: bool = False) -> Path:
    """Writes the package folder for one build; returns it."""
    build = BUILDS[build_name]
    if stage.exists():
        shutil.rmtree(stage)
    shutil.copytree(ADDON, stage, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "wheels", "shared_protocol"))
    vendor_protocol(stage / "shared_protocol")
    wheels_dir = stage / "wheels"
    wheels_dir.mkdir()
    names = []
    for platform in platforms:
        wheel = fetch_wheel(build, platform, cache, offline)
        if wheel.name not in names:
            shutil.copy2(wheel, wheels_dir / wheel.name)
            names.append(wheel.name)
    (stage / "blender_manifest.toml").write_text(build_manifest(build, platforms, names), encoding="utf-8")
    check_imports(stage)
    return stage


def write_zip(stage: Path, path: Path) -> Path:
    """Zips the package folder with the manifest at the archive root (what Blender installs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in stage.rglob("*") if p.is_file()):
            archive.write(file, file.relative_to(stage).as_posix())
    return path


def addon_version() -> str:
    return tomllib.loads((ADDON / "blender_manifest.toml").read_text(encoding="utf-8"))["version"]


def build_extension(out: Path, builds: list[str] | None = None, platforms: list[str] | None = None,
                    cache: Path | None = None, offline: bool = False) -> list[Path]:
    """Writes one zip per build into `out`; returns their paths. Raises BuildError with the fix."""
    builds = builds or list(BUILDS)
    platforms = platforms or list(PLATFORMS)
    unknown = [b for b in builds if b not in BUILDS] + [p for p in platforms if p not in PLATFORMS]
    if unknown:
        raise BuildError(f"unknown build or platform {unknown[0]!r}: builds are {', '.join(BUILDS)}; "
                         f"platforms are {', '.join(PLATFORMS)} (or host)")
    cache = cache or ROOT / "build" / "wheels"
    zips = []
    for name in builds:
        stage = stage_package(name, platforms, out / "stage" / name, cache, offline)
        zips.append(write_zip(stage, out / f"atelier-{addon_version()}-{name}.zip"))
        log(f"wrote {zips[-1]} ({', '.join(platforms)})")
    return zips


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="folder for the zips (default dist/)")
    parser.add_argument("--builds", default=",".join(BUILDS), help=f"comma list of {', '.join(BUILDS)}")
    parser.add_argument("--platforms", default="all",
                        help=f"comma list of {', '.join(PLATFORMS)}, 'host' (this machine) or 'all'")
    parser.add_argument("--wheel-cache", type=Path, default=ROOT / "build" / "wheels",
                        help="where downloaded wheels are kept between builds")
    parser.add_argument("--offline", action="store_true", help="use only wheels already in --wheel-cache")
    return parser


def run(args: argparse.Namespace) -> list[Path]:
    platforms = list(PLATFORMS) if args.platforms == "all" else \
        [host_platform() if p.strip() == "host" else p.strip() for p in args.platforms.split(",")]
    try:
        return build_extension(args.out, [b.strip() for b in args.builds.split(",")], platforms,
                               args.wheel_cache, args.offline)
    except BuildError as exc:
        sys.exit(f"[extension] error: {exc}")


if __name__ == "__main__":
    run(add_arguments(argparse.ArgumentParser(description=__doc__)).parse_args())
