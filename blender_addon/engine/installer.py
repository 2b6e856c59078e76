"""Installing the backend for an artist who has only Blender: a plan of commands and a runner. No bpy.

`make_plan(options, platform)` turns the preferences' choices into a list of `Step`s: check the base Python,
create a venv in the add-on's user folder, upgrade pip, install PyTorch for the platform (CUDA wheels when
an NVIDIA GPU is there, the default wheels on Apple silicon (MPS), the CPU wheels otherwise), optionally
nvdiffrast, then the backend itself from a checkout or a wheel/sdist, and a last import check.

`Runner` runs such a plan in its own thread, one subprocess at a time, streams their output to a log file
and keeps a thread-safe `RunState` (step i of n, the current line, a percentage when the output shows one)
that Blender's main thread reads when it draws. `cancel()` stops the running command. A failure becomes a
readable `message` + `hint` (no pip, no network, disk full, Python too old, ...) that names the log.
The weights manager (`weights.py`) runs its `atelier models` commands with the same runner.
"""

from __future__ import annotations

import os
import platform as _platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..core.errors import AddonError

PACKAGE_NAME = "atelier"
"""The backend's distribution name (pyproject.toml `[project] name`)."""
MIN_PYTHON = (3, 11)
"""The backend's `requires-python`."""
TORCH_REQUIREMENTS = ("torch>=2.4", "torchvision>=0.19")
"""What pyproject.toml asks for; installed first, from the index that matches the platform."""
TORCH_INDEX = "https://download.pytorch.org/whl"
CPU_INDEX = f"{TORCH_INDEX}/cpu"
NVDIFFRAST_SOURCE = "git+https://github.com/NVlabs/nvdiffrast"
NVDIFFRAST_LICENCE = ("nvdiffrast is under the NVIDIA Source Code License: non-commercial use only (research or "
                      "evaluation); it is built from source and needs git and the CUDA toolkit")
SOURCE_SUFFIXES = (".whl", ".tar.gz", ".zip")
"""What a backend source file may be: a wheel or an sdist."""
CHECK_MARK = "ATELIER-CHECK:"
"""Prefix of the lines the base-Python check prints for the failure classifier."""

_CHECK_SCRIPT = f"""\
import sys
print("Python", sys.version.split()[0], "at", sys.executable)
if sys.version_info[:2] < {MIN_PYTHON!r}:
    print("{CHECK_MARK} too-old", ".".join(map(str, sys.version_info[:3])))
    sys.exit(3)
try:
    import ensurepip, venv  # noqa: F401
except ImportError as exc:
    print("{CHECK_MARK} no-pip", exc)
    sys.exit(4)
"""

# Imports what every job needs (torchvision's compiled ops, open_clip through the model store): a torch and a
# torchvision from two different builds fail here, not at the first job.
_VERIFY_SCRIPT = ("import torch, torchvision, backend.cli, backend.models.store; print('torch', torch.__version__, "
                  "'| torchvision', torchvision.__version__, '| cuda', torch.cuda.is_available(), '| mps', "
                  "torch.backends.mps.is_available())")


def venv_python(venv: Path, system: str | None = None) -> Path:
    """The python executable of the venv at `venv` on `system` ("Windows", "Linux", "Darwin"; default: this one)."""
    system = system or _platform.system()
    return Path(venv) / ("Scripts/python.exe" if system == "Windows" else "bin/python")


# -- platform -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Platform:
    """What decides which PyTorch wheels to install."""

    system: str
    """platform.system(): "Linux", "Windows" or "Darwin"."""
    machine: str
    """platform.machine(), lower case: "x86_64", "amd64", "arm64", "aarch64"."""
    nvidia: bool = False
    """Whether an NVIDIA driver is there (`nvidia-smi` runs)."""
    cuda_driver: tuple[int, int] | None = None
    """The newest CUDA version the driver supports ("CUDA Version" in nvidia-smi's header), when known."""

    def describe(self) -> str:
        gpu = "no NVIDIA GPU"
        if self.nvidia:
            gpu = "NVIDIA GPU" + (f" (driver supports CUDA {self.cuda_driver[0]}.{self.cuda_driver[1]})"
                                  if self.cuda_driver else "")
        return f"{self.system} {self.machine}, {gpu}"


def quick_platform(which: Callable[[str], str | None] = shutil.which) -> Platform:
    """The platform without running anything (for drawing the preferences): nvidia-smi on PATH or not."""
    return Platform(_platform.system(), _platform.machine().lower(), nvidia=which("nvidia-smi") is not None)


def detect_platform(which: Callable[[str], str | None] = shutil.which, timeout: float = 10.0) -> Platform:
    """The platform, asking `nvidia-smi` for the driver's CUDA version (runs a process: call it off the main thread)."""
    found = quick_platform(which)
    if not found.nvidia:
        return found
    try:
        out = subprocess.run([which("nvidia-smi")], capture_output=True, text=True, timeout=timeout,
                             creationflags=_no_window()).stdout
    except (OSError, subprocess.SubprocessError):
        return replace(found, nvidia=False)  # a driver that does not answer cannot run CUDA wheels either
    match = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", out)
    return replace(found, cuda_driver=(int(match.group(1)), int(match.group(2))) if match else None)


def cuda_index(driver: tuple[int, int] | None) -> str:
    """The PyTorch wheel index for a driver that supports CUDA `driver`: cu128 from 12.8 on (needed by the newest
    GPUs), cu126 for other CUDA 12 drivers and when unknown, cu118 for CUDA 11.8 to 11.x drivers."""
    if driver is not None and driver >= (12, 8):
        return f"{TORCH_INDEX}/cu128"
    if driver is not None and (11, 8) <= driver < (12, 0):
        return f"{TORCH_INDEX}/cu118"
    return f"{TORCH_INDEX}/cu126"


def torch_variant(choice: str, platform: Platform) -> str:
    """Which PyTorch build `choice` ("auto", "cuda", "mps", "cpu") means on `platform`: "cuda", "mps" or "cpu"."""
    if choice not in ("auto", "cuda", "mps", "cpu"):
        raise AddonError(f"unknown PyTorch choice {choice!r}", "choose Auto, CUDA, MPS or CPU")
    mac = platform.system == "Darwin"
    apple_silicon = mac and platform.machine in ("arm64", "aarch64")
    if mac and not apple_silicon:
        raise AddonError("PyTorch 2.4 and later have no builds for Intel Macs, so the backend cannot be installed here",
                         "run the backend on another machine and use Remote mode", code="install_platform")
    if choice == "auto":
        return "mps" if apple_silicon else ("cuda" if platform.nvidia else "cpu")
    if choice == "cuda" and mac:
        raise AddonError("CUDA is not available on macOS", "choose Auto or MPS", code="install_platform")
    if choice == "mps" and not apple_silicon:
        raise AddonError("MPS (the Apple GPU) exists only on Apple silicon Macs", "choose Auto, CUDA or CPU",
                         code="install_platform")
    return "mps" if choice == "cpu" and apple_silicon else choice  # the macOS wheels are one build for both


# -- the plan -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One command of a plan."""

    label: str
    """What the step does, for the progress line ("Install PyTorch (CPU wheels)")."""
    argv: tuple[str, ...]
    """The command; argv[0] is an executable path."""


@dataclass(frozen=True)
class InstallOptions:
    """What the preferences say about the install."""

    base_python: str
    """The interpreter that creates the venv: Blender's own Python (sys.executable inside Blender) or one chosen."""
    venv_dir: Path
    """Where the venv goes (the add-on's user folder + "/venv")."""
    source: str
    """The backend: a checkout folder holding pyproject.toml, or an atelier wheel/sdist file."""
    torch: str = "auto"
    """auto | cuda | mps | cpu."""
    nvdiffrast: bool = False
    """Also build nvdiffrast (CUDA only; NVIDIA Source Code License, non-commercial)."""

    @property
    def python(self) -> Path:
        """The venv's python once installed: what "Backend Python" becomes."""
        return venv_python(self.venv_dir)

    def validate(self) -> None:
        """AddonError that says the fix when the base Python or the source is unusable (file checks only)."""
        check_base_python(self.base_python)
        check_source(self.source)
        folder = Path(self.venv_dir).expanduser()
        if folder.exists() and not folder.is_dir():
            raise AddonError(f"the install folder {folder} is a file", "choose another install folder",
                             code="install_folder")


def check_base_python(python: str) -> Path:
    hint = ("leave Base Python empty to use Blender's own Python, or choose a Python "
            f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer executable")
    if not python or not python.strip():
        raise AddonError("no Python is set to create the backend's environment", hint, code="install_python")
    path = Path(python.strip()).expanduser()
    if not path.is_file():
        raise AddonError(f"the Python {path} does not exist", hint, code="install_python")
    return path


def check_source(source: str) -> Path:
    """The backend source as a path: a folder with an Atelier pyproject.toml, or an atelier .whl/.tar.gz/.zip."""
    hint = ("choose the Atelier checkout folder (the one holding pyproject.toml) or an atelier wheel or sdist "
            "(atelier-<version>-py3-none-any.whl, atelier-<version>.tar.gz)")
    if not source or not source.strip():
        raise AddonError("no backend source is set", hint, code="install_source")
    path = Path(source.strip()).expanduser()
    if not path.exists():
        raise AddonError(f"the backend source {path} does not exist", hint, code="install_source")
    if path.is_dir():
        pyproject = path / "pyproject.toml"
        if not pyproject.is_file():
            raise AddonError(f"{path} has no pyproject.toml, so it is not an Atelier checkout", hint,
                             code="install_source")
        try:
            name = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("name", "")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise AddonError(f"cannot read {pyproject}: {exc}", hint, code="install_source") from exc
        if name != PACKAGE_NAME:
            raise AddonError(f"{pyproject} is the project {name or '(no name)'!r}, not {PACKAGE_NAME!r}", hint,
                             code="install_source")
        return path
    if not path.name.lower().endswith(SOURCE_SUFFIXES) or not path.name.lower().startswith(PACKAGE_NAME):
        raise AddonError(f"{path.name} is not an {PACKAGE_NAME} wheel or sdist", hint, code="install_source")
    return path


def default_source() -> str:
    """The checkout this add-on runs from, when it runs from one (a developer's link); else ""."""
    root = Path(__file__).resolve().parents[2]  # <checkout>/blender_addon/engine/installer.py
    try:
        check_source(str(root))
    except AddonError:
        return ""
    return str(root)


def make_plan(options: InstallOptions, platform: Platform) -> list[Step]:
    """The commands that install the backend with `options` on `platform`. AddonError for a choice that cannot work."""
    options.validate()
    variant = torch_variant(options.torch, platform)
    if options.nvdiffrast and variant != "cuda":
        raise AddonError("nvdiffrast needs CUDA (an NVIDIA GPU)", "untick 'Also install nvdiffrast': the backend "
                         "renders with its PyTorch rasterizer everywhere", code="install_platform")
    base = str(Path(options.base_python.strip()).expanduser())
    python = str(venv_python(Path(options.venv_dir), platform.system))
    pip = (python, "-m", "pip", "install", "--no-input")
    steps = [
        Step("Check the base Python", (base, "-c", _CHECK_SCRIPT)),
        Step("Create the environment", (base, "-m", "venv", str(options.venv_dir))),
        Step("Upgrade pip", (*pip, "--upgrade", "pip")),
    ]
    if variant == "cuda":
        index = cuda_index(platform.cuda_driver)
        steps.append(Step(f"Install PyTorch (CUDA wheels, {index.rsplit('/', 1)[-1]})",
                          (*pip, *TORCH_REQUIREMENTS, "--index-url", index)))
    elif variant == "mps":
        steps.append(Step("Install PyTorch (macOS wheels, MPS)", (*pip, *TORCH_REQUIREMENTS)))
    else:
        steps.append(Step("Install PyTorch (CPU wheels)", (*pip, *TORCH_REQUIREMENTS, "--index-url", CPU_INDEX)))
    if options.nvdiffrast:
        steps.append(Step("Install nvdiffrast's build tools", (*pip, "setuptools", "wheel", "ninja")))
        steps.append(Step("Build nvdiffrast (non-commercial licence)",
                          (*pip, "--no-build-isolation", NVDIFFRAST_SOURCE)))
    steps.append(Step("Install the Atelier backend", (*pip, str(check_source(options.source)))))
    steps.append(Step("Check the backend imports", (python, "-c", _VERIFY_SCRIPT)))
    return steps


# -- running a plan -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunState:
    """A runner's state as the UI draws it (a copy: reading it never races the runner's thread)."""

    status: str = "idle"
    """idle | running | done | failed | cancelled."""
    step: int = 0
    """The step running (or that ended the run), from 1."""
    total: int = 0
    label: str = ""
    """The step's label."""
    line: str = ""
    """The newest non-empty output line (a pip "Downloading ..." line, a progress bar)."""
    fraction: float = 0.0
    """The whole run's progress in [0, 1]: steps done plus the running step's percentage when it prints one."""
    message: str = ""
    """Why it failed or what it did."""
    hint: str = ""
    """How to fix a failure; it names the log."""
    log_path: str = ""
    started: float = 0.0
    finished: float = 0.0

    @property
    def busy(self) -> bool:
        return self.status == "running"


_PERCENT = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d+)?)\s?%")
_ATELIER_ERROR = re.compile(r"^atelier [\w-]+: error: (.+)$", re.M)

_NETWORK = (r"Temporary failure in name resolution|Failed to establish a new connection|Network is unreachable|"
            r"Name or service not known|nodename nor servname|getaddrinfo failed|NewConnectionError|ConnectTimeout|"
            r"ReadTimeoutError|Connection refused|No connection could be made|ProxyError|"
            r"CERTIFICATE_VERIFY_FAILED|Could not fetch URL")


def parse_percent(line: str) -> float | None:
    """The last percentage in a progress line ("45%|####   | 270M/605M") as a fraction, or None."""
    found = [float(m) for m in _PERCENT.findall(line)]
    found = [value for value in found if value <= 100.0]
    return found[-1] / 100.0 if found else None


def explain_failure(output: str, step: Step, returncode: int, log_path: Path | str, folder: Path | str = "",
                    ) -> tuple[str, str]:
    """(message, hint) for a step that exited `returncode` after printing `output`; the hint names the log."""
    see = f"the full output is in {log_path}"
    too_old = re.search(rf"{CHECK_MARK} too-old (\S+)", output)
    if too_old:
        return (f"Python {too_old.group(1)} is too old: the backend needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} "
                "or newer", f"choose a newer Base Python (Blender 4.2 and later bundle 3.11); {see}")
    if re.search(r"requires a different Python|Requires-Python", output):
        return ("a package refuses this Python version", f"choose a Base Python 3.11, 3.12 or 3.13; {see}")
    if re.search(rf"{CHECK_MARK} no-pip|No module named '?(ensurepip|pip)\b|ensurepip is not available", output):
        return ("this Python has no pip (ensurepip), so it cannot make the backend's environment",
                "choose another Base Python that has pip (python.org's installers do; on Debian/Ubuntu install "
                f"python3-venv); {see}")
    if re.search(r"No space left on device|\[Errno 28\]|ENOSPC|There is not enough space on the disk", output):
        where = f" of {folder}" if folder else ""
        return ("the disk is full", f"free space on the drive{where} (PyTorch needs 2 GB, its CUDA build about "
                f"6 GB) or choose another install folder; {see}")
    cli = _ATELIER_ERROR.findall(output)
    if cli:
        message, _, hint = cli[-1].partition(" — ")
        return message.strip(), f"{hint.strip()}; {see}" if hint else see
    if re.search(_NETWORK, output):
        return ("no network: pip could not reach the package index",
                f"check the internet connection or the proxy (set HTTPS_PROXY before starting Blender); {see}")
    if re.search(r"Cannot find command 'git'|No such file or directory: 'git'|git: not found", output):
        return "git is not installed, and building nvdiffrast needs it", f"install git, or untick nvdiffrast; {see}"
    missing = re.search(r"No matching distribution found for (\S+)", output)
    if missing:
        return (f"pip found no {missing.group(1)} for this platform and Python",
                f"PyTorch may not be built for this Python or system yet; try another Base Python; {see}")
    if re.search(r"operator torchvision::\w+ does not exist", output):
        return ("torch and torchvision in the environment come from two different builds",
                f"delete the environment's folder and run Install Backend again (PyTorch: CPU or CUDA, not "
                f"mixed); {see}")
    if re.search(r"Permission denied|\[Errno 13\]|Access is denied", output):
        return "permission denied", f"choose an install folder you can write to; {see}"
    last = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "")
    return (f"{step.label} failed (exit code {returncode})" + (f": {last[:300]}" if last else ""), see)


def child_env(extra: dict[str, str] | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a backend-side command: Blender's own Python settings removed, output unbuffered."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if k not in ("PYTHONHOME", "PYTHONPATH", "PYTHONEXECUTABLE", "PYTHONSTARTUP")}
    env.update(PYTHONUNBUFFERED="1", PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONIOENCODING="utf-8")
    env.update(extra or {})
    return env


def _no_window() -> int:
    return getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0


_TAIL_CHARS = 64_000


class Runner:
    """Runs a plan's steps one after another in a thread; `snapshot()` (any thread) says where it is.

    `steps` may be a callable that makes the plan: it runs in the thread (e.g. to ask nvidia-smi), and an
    AddonError it raises fails the run with its message. The log gets every command and all its output.
    """

    def __init__(self, steps: Sequence[Step] | Callable[[], Sequence[Step]], log_path: Path, *,
                 env: dict[str, str] | None = None, cwd: Path | None = None, folder: Path | str = "",
                 title: str = "Atelier"):
        self._steps = steps
        self.log_path = Path(log_path)
        self.env = child_env() if env is None else env
        self.cwd = Path(cwd) if cwd is not None else self.log_path.parent
        self.folder = folder
        """Named in a disk-full error."""
        self.title = title
        self._lock = threading.Lock()
        self._state = RunState(log_path=str(self.log_path))
        self._cancel = threading.Event()
        self._process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    # -- the main thread's side ----------------------------------------------------------------------

    def start(self) -> None:
        """Starts the thread and returns at once."""
        if self._thread is not None:
            raise RuntimeError("a Runner runs once; make another")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir(parents=True, exist_ok=True)
        self._set(status="running", started=time.time())
        self._thread = threading.Thread(target=self._run, name="atelier-install", daemon=True)
        self._thread.start()

    def snapshot(self) -> RunState:
        with self._lock:
            return self._state

    def cancel(self) -> None:
        """Stops the running command (and what it started); the run ends as "cancelled". Returns at once."""
        self._cancel.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            _terminate(process)
            threading.Thread(target=_kill_later, args=(process,), name="atelier-install-kill", daemon=True).start()

    def wait(self, timeout: float | None = None) -> bool:
        """Waits for the thread (tests, shutdown); True when it ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the thread's side ---------------------------------------------------------------------------

    def _set(self, **changes) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)

    def _run(self) -> None:
        with open(self.log_path, "ab") as log:
            def write(text: str) -> None:
                log.write(text.encode("utf-8", "replace"))
                log.flush()

            write(f"\n=== {self.title}: {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n")
            try:
                steps = list(self._steps() if callable(self._steps) else self._steps)
            except AddonError as exc:
                write(f"refused: {exc}\n")
                self._finish("failed", exc.message, exc.hint)
                return
            except Exception as exc:  # noqa: BLE001  a plan that cannot be made is a failed run, not a dead thread
                write(f"could not make the plan: {type(exc).__name__}: {exc}\n")
                self._finish("failed", f"could not make the plan: {type(exc).__name__}: {exc}",
                             f"the log is {self.log_path}")
                return
            self._set(total=len(steps))
            for index, step in enumerate(steps):
                if self._cancel.is_set():
                    break
                self._set(step=index + 1, label=step.label, line="", fraction=index / len(steps))
                write(f"\n--- step {index + 1} of {len(steps)}: {step.label}\n$ {_quote(step.argv)}\n")
                outcome = self._run_step(step, index, len(steps), write)
                if outcome is not None:
                    if self._cancel.is_set():
                        break
                    message, hint = outcome
                    write(f"\nfailed: {message}\n")
                    self._finish("failed", message, hint)
                    return
            if self._cancel.is_set():
                write("\ncancelled\n")
                self._finish("cancelled", "cancelled", f"what ran is in {self.log_path}")
                return
            write("\ndone\n")
            self._finish("done", "", "")

    def _finish(self, status: str, message: str, hint: str) -> None:
        self._set(status=status, message=message, hint=hint, finished=time.time(),
                  fraction=1.0 if status == "done" else self.snapshot().fraction)

    def _run_step(self, step: Step, index: int, total: int, write) -> tuple[str, str] | None:
        """Runs one command; None when it succeeded (or was cancelled), else (message, hint)."""
        posix = os.name == "posix"
        try:
            with self._lock:
                if self._cancel.is_set():
                    return None
                self._process = subprocess.Popen(
                    list(step.argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    env=self.env, cwd=str(self.cwd), creationflags=_no_window(), start_new_session=posix)
        except OSError as exc:
            write(f"cannot run {step.argv[0]}: {exc}\n")
            return (f"{step.label}: cannot run {step.argv[0]}: {exc.strerror or exc}",
                    f"check that the file exists and is a Python executable; the log is {self.log_path}")
        process = self._process
        tail = ""
        pending = ""
        while True:
            chunk = process.stdout.read1(8192)
            if not chunk:
                break
            log_text = chunk.decode("utf-8", "replace")
            write(log_text)
            tail = (tail + log_text)[-_TAIL_CHARS:]
            # Progress bars redraw with \r: a piece between \r or \n is one screen line.
            pieces = re.split(r"[\r\n]", pending + log_text)
            pending = pieces.pop()
            shown = next((p.strip() for p in reversed(pieces + [pending]) if p.strip()), "")
            if shown:
                percent = parse_percent(shown)
                changes = {"line": shown[:300]}
                if percent is not None:
                    changes["fraction"] = (index + percent) / total
                self._set(**changes)
        code = process.wait()
        with self._lock:
            self._process = None
        if code == 0 or self._cancel.is_set():
            return None
        return explain_failure(tail, step, code, self.log_path, self.folder)


def _quote(argv: Sequence[str]) -> str:
    return " ".join(f'"{a}"' if " " in a or not a else a for a in argv)


def _terminate(process: subprocess.Popen) -> None:
    try:
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGTERM)  # pip and the builds it started
        else:
            process.terminate()
    except OSError:
        pass


def _kill_later(process: subprocess.Popen, grace: float = 5.0) -> None:
    try:
        process.wait(grace)
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except OSError:
        pass
