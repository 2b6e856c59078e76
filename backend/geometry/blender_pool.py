"""Extract assets from .blend, FBX, USD and Alembic files with a pool of Blender worker processes.

The worker (`blender_worker.py`) runs inside Blender's Python; this side never imports bpy. Each worker serves
one file at a time over a line protocol (see the worker's doc), writing one GLB (and a preview PNG) per asset
into that file's own output folder. A worker that crashes or hangs past `timeout_s` on a file is killed and
replaced; the file is reported failed with the reason and the run goes on.

    with BlenderPool(BlenderConfig(workers=4)) as pool:
        for result in pool.extract(paths, out_root):   # ExtractedFile, in completion order
            ...
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from backend.errors import AtelierError, DependencyMissingError

WORKER_SCRIPT = Path(__file__).resolve().parent / "blender_worker.py"
REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_BLENDER_PYTHON = REPO_ROOT / ".venv-blender" / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
"""The bpy environment `build.py` makes: used when no Blender is named."""
BLENDER_ENV = "ATELIER_BLENDER"
BLENDER_EXTENSIONS = (".blend", ".fbx", ".usd", ".usda", ".usdc", ".usdz", ".abc")
"""File types only a Blender worker reads (case-insensitive)."""
READY = "ATELIER-READY "
MARKER = "ATELIER-RESULT "
TEST_HOOK_ENV = "ATELIER_BLENDER_WORKER_TEST"
"""Tests only, read by the worker: `hang:SUBSTR` / `crash:SUBSTR` on files whose path contains SUBSTR."""
NO_BLENDER_HINT = ("give a Blender with --blender PATH (a blender executable, or a Python with the bpy module), "
                   f"set {BLENDER_ENV}, or run `python build.py setup` to make .venv-blender")
STARTUP_TIMEOUT_S = 120.0
"""How long a worker may take to import bpy and say it is ready (a cold start on a busy machine takes seconds)."""


class BlenderNotFoundError(DependencyMissingError):
    """No Blender to run workers with."""


class BlenderStartError(AtelierError):
    """A named Blender did not start a worker (wrong path, bpy import failed)."""


@dataclass
class BlenderConfig:
    """How Blender workers are found and run."""

    blender: str | None = None
    """A Blender executable or a Python with the bpy module; None searches (see `find_blender`)."""
    workers: int = 0
    """Worker processes; 0 = one per CPU core (never more than there are files)."""
    timeout_s: float = 300.0
    """Seconds one file may take before its worker is killed and the file reported as timed out."""
    blend_objects: str = "assets"
    """In a .blend: "assets" = objects and collections marked as assets; "all" = also every mesh object."""

    def __post_init__(self):
        if self.blend_objects not in ("assets", "all"):
            raise ValueError(f"blend_objects must be 'assets' or 'all', not {self.blend_objects!r}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = one per core), not {self.workers}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, not {self.timeout_s}")


@dataclass
class ExtractedAsset:
    """One library entry extracted from a file."""

    datablock: str
    """"Object" or "Collection" (from a .blend), "File" (a whole FBX / USD / Alembic file)."""
    name: str
    """The datablock's name in the .blend (to append or link it back), or the file stem."""
    glb: Path | None
    """The exported GLB (modifiers applied, materials); None when this asset failed (see `error`)."""
    marked: bool = False
    catalog_id: str | None = None
    catalog_simple_name: str = ""
    tags: list[str] = field(default_factory=list)
    description: str = ""
    author: str = ""
    license: str = ""
    copyright: str = ""
    preview: Path | None = None
    """The asset's own stored preview as PNG; None when it has none."""
    error: str | None = None
    """Why this one asset could not be exported (no geometry, exporter failure); the file's others still are."""


@dataclass
class ExtractedFile:
    """What extracting one file gave: its assets, or why it failed."""

    path: Path
    assets: list[ExtractedAsset] = field(default_factory=list)
    error: str | None = None
    """One readable reason the whole file failed; None when it was read (possibly with 0 assets)."""
    hint: str = ""
    """How to fix `error`."""
    blender: str = ""
    """The worker's Blender version."""
    file_version: str | None = None
    """The Blender version that saved the .blend ("5.0.113"); None for other formats or when unread."""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


# --- finding Blender -------------------------------------------------------------------------------------------

def _is_python(path: str) -> bool:
    return Path(path).name.lower().startswith("python")


def worker_command(executable: str) -> list[str]:
    """argv that starts a worker: `python worker.py` for a Python with bpy, else Blender in background mode."""
    if _is_python(executable):
        return [executable, str(WORKER_SCRIPT)]
    return [executable, "--background", "--factory-startup", "--python", str(WORKER_SCRIPT), "--"]


def find_blender(explicit: str | None = None) -> list[str] | None:
    """The worker argv for the first Blender found: `explicit`, $ATELIER_BLENDER, the repo's .venv-blender
    python, `blender` on PATH. None when there is none. A named path that does not exist is an error, not a
    silent fall-back (the user asked for that one)."""
    for origin, named in (("--blender", explicit), (BLENDER_ENV, os.environ.get(BLENDER_ENV))):
        if named:
            resolved = shutil.which(named) or (named if Path(named).is_file() else None)
            if resolved is None:
                raise BlenderNotFoundError(f"{origin} names {named}, which is not an executable file",
                                           "give the path of a blender executable or of a Python with bpy")
            return worker_command(resolved)
    if REPO_BLENDER_PYTHON.is_file():
        return worker_command(str(REPO_BLENDER_PYTHON))
    on_path = shutil.which("blender")
    return worker_command(on_path) if on_path else None


def no_blender_message(count: int) -> str:
    """The one line the indexer prints when Blender-only files are skipped."""
    return f"skipped {count} .blend/.fbx/.usd/.abc file(s): no Blender found; {NO_BLENDER_HINT}"


# --- cheap pre-check -------------------------------------------------------------------------------------------

def blend_header_version(path: str | Path) -> tuple[int, int] | None:
    """(major, minor) of the Blender that saved a .blend, from its header; None when the file is compressed
    (gzip or zstd: only Blender can tell). Raises InvalidInputError-like `ValueError` with a reason for a file
    that is not a .blend or is cut short (no ENDB block at its end)."""
    path = Path(path)
    with path.open("rb") as handle:
        head = handle.read(17)
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64))
        tail = handle.read()
    if head[:2] == b"\x1f\x8b" or head[:4] == b"\x28\xb5\x2f\xfd":
        return None
    if not head.startswith(b"BLENDER"):
        if len(head) < 12:
            raise ValueError(f"not a .blend file (only {size} bytes)")
        raise ValueError("not a .blend file (no BLENDER header)")
    if head[7:9].isdigit() and len(head) >= 17:  # 5.0+: "BLENDER17-01v0500": header size, format, endian, version
        digits = head[13:17]
        if not digits.isdigit():
            raise ValueError("damaged .blend header")
        number = int(digits)
    elif len(head) >= 12 and head[9:12].isdigit():  # up to 4.x: "BLENDER_v405"
        number = int(head[9:12])
    else:
        raise ValueError("damaged .blend header")
    if b"ENDB" not in tail:
        raise ValueError("truncated .blend file (it does not end with Blender's ENDB block)")
    return number // 100, number % 100


def blend_problem(path: Path, blender: str) -> tuple[str, str] | None:
    """(reason, hint) when the header already says Blender `blender` ("5.0.1") cannot read the file."""
    try:
        version = blend_header_version(path)
    except ValueError as exc:
        return str(exc), "re-save or re-download the file"
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}", "check the file's permissions"
    running = tuple(int(p) for p in blender.split(".")[:2] if p.isdigit())
    if version is not None and len(running) == 2 and version > running:
        return (f"saved by Blender {version[0]}.{version[1]}, newer than this Blender {blender}",
                f"index it with Blender {version[0]}.{version[1]} or newer: --blender PATH (or {BLENDER_ENV})")
    return None


# --- one worker process ----------------------------------------------------------------------------------------

class _WorkerDied(Exception):
    pass


class _WorkerTimedOut(Exception):
    pass


class _Worker:
    """One Blender process. Two threads drain its stdout (protocol lines into a queue) and stderr (kept as a
    short tail for error messages), so neither pipe ever fills and blocks Blender."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            text=True, encoding="utf-8", errors="replace", bufsize=1,
            start_new_session=(os.name == "posix"))  # its own group: a kill reaches Blender's children too
        self.lines: queue.Queue = queue.Queue()
        self.stderr_tail: deque[str] = deque(maxlen=20)
        self.version = ""
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self):
        for line in self.proc.stdout:
            for prefix in (READY, MARKER):
                at = line.find(prefix)
                if at >= 0:
                    self.lines.put((prefix, line[at + len(prefix):]))
        self.lines.put(None)  # EOF: the process is gone

    def _read_stderr(self):
        for line in self.proc.stderr:
            if line.strip():
                self.stderr_tail.append(line.rstrip())

    def _next(self, timeout: float) -> tuple[str, dict]:
        try:
            item = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise _WorkerTimedOut() from None
        if item is None:
            raise _WorkerDied()
        prefix, text = item
        return prefix, json.loads(text)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            prefix, payload = self._next(max(0.01, deadline - time.monotonic()))
            if prefix == READY:
                self.version = payload.get("blender", "")
                return

    def request(self, payload: dict, timeout: float) -> dict:
        self.proc.stdin.write(json.dumps(payload) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            prefix, answer = self._next(max(0.01, deadline - time.monotonic()))
            if prefix == MARKER:
                return answer

    def death_reason(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "Blender stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"Blender crashed reading it ({name})"
        return f"Blender crashed reading it (exit code {code})"

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                if os.name == "posix":
                    os.killpg(self.proc.pid, signal.SIGKILL)
                else:
                    self.proc.kill()
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait()

    def close(self, timeout: float = 10.0) -> None:
        """EOF on stdin ends the worker's loop; one that does not exit in time is killed."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


# --- the pool --------------------------------------------------------------------------------------------------

def file_out_dir(out_root: Path, path: Path) -> Path:
    """A folder per source file, named by a hash of its absolute path: stable across runs, never shared."""
    digest = hashlib.sha1(str(path.resolve()).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return out_root / digest


class BlenderPool:
    """N Blender worker processes (started on demand, kept between `extract` calls until `close`)."""

    def __init__(self, config: BlenderConfig | None = None):
        self.config = config or BlenderConfig()
        argv = find_blender(self.config.blender)
        if argv is None:
            raise BlenderNotFoundError("no Blender found to read .blend/.fbx/.usd/.abc files", NO_BLENDER_HINT)
        self.argv = argv
        self.size = self.config.workers or os.cpu_count() or 1
        self.version = ""
        """The workers' Blender version, known once one has started."""
        self._workers: list[_Worker | None] = [None] * self.size
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._closed = False
        env = dict(os.environ)
        env.setdefault("PYTHONIOENCODING", "utf-8")
        env.pop("PYTHONPATH", None)  # the worker imports nothing of ours; a torch venv's path would only confuse bpy
        self._env = env

    def __enter__(self) -> BlenderPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start_worker(self) -> _Worker:
        worker = _Worker(self.argv, self._env)
        try:
            worker.wait_ready(STARTUP_TIMEOUT_S)
        except (_WorkerDied, _WorkerTimedOut, json.JSONDecodeError):
            worker.kill()
            tail = " | ".join(list(worker.stderr_tail)[-3:]) or "no output"
            raise BlenderStartError(f"the Blender worker did not start ({' '.join(self.argv[:1])}): {tail}",
                                    f"check the Blender given; {NO_BLENDER_HINT}") from None
        self.version = worker.version
        return worker

    def start(self, count: int = 1) -> str:
        """Start `count` workers now (the first alone, so a broken Blender fails once, before any file is
        queued; the rest in parallel); returns the Blender version. Others start on demand in `extract`."""
        with self._lock:
            if self._workers[0] is None:
                self._workers[0] = self._start_worker()
            missing = [slot for slot in range(min(count, self.size)) if self._workers[slot] is None]
            errors: list[BaseException] = []

            def launch(slot: int) -> None:
                try:
                    self._workers[slot] = self._start_worker()
                except BlenderStartError as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=launch, args=(slot,)) for slot in missing]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise errors[0]
        return self.version

    def extract(self, paths: Iterable[str | Path], out_root: str | Path) -> Iterator[ExtractedFile]:
        """Extract every file, yielding results as they complete. Each file's GLBs and previews go to
        `file_out_dir(out_root, path)`, emptied first. Closing the iterator early cancels what is left."""
        if self._closed:
            raise RuntimeError("this BlenderPool is closed")
        jobs = [Path(p).resolve() for p in paths]
        if not jobs:
            return
        out_root = Path(out_root)
        out_root.mkdir(parents=True, exist_ok=True)
        self.start()
        self._cancel.clear()
        todo: queue.Queue = queue.Queue()
        for job in jobs:
            todo.put(job)
        results: queue.Queue = queue.Queue()
        threads = [threading.Thread(target=self._serve, args=(slot, todo, results, out_root), daemon=True)
                   for slot in range(min(self.size, len(jobs)))]
        for thread in threads:
            thread.start()
        done = 0
        try:
            while done < len(jobs):
                result = results.get()
                done += 1
                yield result
        finally:
            if done < len(jobs):
                self.cancel()
            for thread in threads:
                thread.join()

    def _serve(self, slot: int, todo: queue.Queue, results: queue.Queue, out_root: Path) -> None:
        """One slot's loop: take a file, run it on this slot's worker (starting or replacing it as needed)."""
        while True:
            try:
                path = todo.get_nowait()
            except queue.Empty:
                return
            if self._cancel.is_set():
                results.put(ExtractedFile(path, error="cancelled", hint="run the index again"))
                continue
            results.put(self._extract_one(slot, path, out_root))

    def _extract_one(self, slot: int, path: Path, out_root: Path) -> ExtractedFile:
        start = time.perf_counter()
        if path.suffix.lower() == ".blend" and path.is_file():
            problem = blend_problem(path, self.version)
            if problem is not None:
                return ExtractedFile(path, error=problem[0], hint=problem[1], blender=self.version)
        out = file_out_dir(out_root, path)
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        worker = self._workers[slot]
        try:
            if worker is None:
                worker = self._workers[slot] = self._start_worker()
        except BlenderStartError as exc:
            return ExtractedFile(path, error=exc.message, hint=exc.hint)
        request = {"file": str(path), "out": str(out), "blend_objects": self.config.blend_objects}
        try:
            answer = worker.request(request, self.config.timeout_s)
        except _WorkerTimedOut:
            worker.kill()
            self._workers[slot] = None  # replaced on this slot's next file
            return ExtractedFile(path, error=f"timed out after {self.config.timeout_s:g} s",
                                 hint="raise the timeout, or open the file in Blender to see why it is slow",
                                 blender=self.version, seconds=time.perf_counter() - start)
        except (_WorkerDied, BrokenPipeError, OSError, json.JSONDecodeError):
            reason = "cancelled" if self._cancel.is_set() else worker.death_reason()
            worker.kill()
            self._workers[slot] = None
            return ExtractedFile(path, error=reason, hint="open the file in Blender to check it; it may be corrupt",
                                 blender=self.version, seconds=time.perf_counter() - start)
        return _from_answer(path, answer)

    def cancel(self) -> None:
        """Stop: files not started are reported "cancelled", workers mid-file are killed (and restarted later)."""
        self._cancel.set()
        for slot, worker in enumerate(self._workers):
            if worker is not None:
                worker.kill()
                self._workers[slot] = None

    def close(self) -> None:
        """Let every worker finish and exit (killing any that will not)."""
        self._closed = True
        for slot, worker in enumerate(self._workers):
            if worker is not None:
                worker.close()
                self._workers[slot] = None


def _from_answer(path: Path, answer: dict) -> ExtractedFile:
    common = dict(blender=answer.get("blender", ""), seconds=float(answer.get("seconds", 0.0)))
    if not answer.get("ok"):
        return ExtractedFile(path, error=answer.get("error") or "failed", hint=answer.get("hint", ""), **common)
    assets = []
    for entry in answer.get("assets", []):
        assets.append(ExtractedAsset(
            datablock=entry["datablock"], name=entry["name"], glb=Path(entry["glb"]) if entry.get("glb") else None,
            marked=bool(entry.get("marked")), catalog_id=entry.get("catalog_id"),
            catalog_simple_name=entry.get("catalog_simple_name", ""), tags=list(entry.get("tags", [])),
            description=entry.get("description", ""), author=entry.get("author", ""),
            license=entry.get("license", ""), copyright=entry.get("copyright", ""),
            preview=Path(entry["preview"]) if entry.get("preview") else None, error=entry.get("error")))
    return ExtractedFile(path, assets=assets, file_version=answer.get("file_version"), **common)
