"""The backend installer's plan and runner (blender_addon/installer.py, no bpy): the commands for each platform,
bad input, and real runs of harmless plans (progress, the log, failures that name the log, cancel)."""

from __future__ import annotations

import ast
import os
import sys
import time
from pathlib import Path

import pytest

from addon_helpers import ROOT

from blender_addon.core.errors import AddonError
from blender_addon.engine import installer
from blender_addon.engine.installer import CPU_INDEX, InstallOptions, Platform, Runner, Step, make_plan

PY = sys.executable


def options(tmp_path: Path, **changes) -> InstallOptions:
    values = dict(base_python=PY, venv_dir=tmp_path / "venv", source=str(ROOT), torch="auto", nvdiffrast=False)
    values.update(changes)
    return InstallOptions(**values)


def torch_step(steps: list[Step]) -> Step:
    (step,) = [s for s in steps if "torch>=2.4" in s.argv]
    return step


def test_the_bpy_free_modules_stay_bpy_free():
    for name in ("installer", "weights"):
        tree = ast.parse((ROOT / "blender_addon" / "engine" / f"{name}.py").read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                     if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module}
        assert not imported & {"bpy", "mathutils", "addon_utils", "bmesh"}, name


# -- the plan -------------------------------------------------------------------------------------------

def test_plan_on_linux_with_an_nvidia_gpu_installs_cuda_wheels(tmp_path):
    steps = make_plan(options(tmp_path), Platform("Linux", "x86_64", nvidia=True, cuda_driver=(12, 4)))
    venv_py = str(tmp_path / "venv" / "bin" / "python")
    assert [s.label for s in steps] == [
        "Check the base Python", "Create the environment", "Upgrade pip", "Install PyTorch (CUDA wheels, cu126)",
        "Install the Atelier backend", "Check the backend imports"]
    assert steps[0].argv[:2] == (PY, "-c") and steps[1].argv == (PY, "-m", "venv", str(tmp_path / "venv"))
    assert all(s.argv[0] == venv_py for s in steps[2:])
    torch = torch_step(steps)
    assert torch.argv[-2:] == ("--index-url", "https://download.pytorch.org/whl/cu126")
    assert "torchvision>=0.19" in torch.argv
    assert steps[4].argv[-1] == str(ROOT) and steps[4].argv[1:4] == ("-m", "pip", "install")
    # The driver's CUDA version picks the index; Windows venvs keep python in Scripts/.
    newest = make_plan(options(tmp_path), Platform("Windows", "amd64", nvidia=True, cuda_driver=(12, 8)))
    assert torch_step(newest).argv[-1].endswith("/cu128")
    assert newest[2].argv[0] == str(tmp_path / "venv" / "Scripts" / "python.exe")
    old = make_plan(options(tmp_path), Platform("Linux", "x86_64", nvidia=True, cuda_driver=(11, 8)))
    assert torch_step(old).argv[-1].endswith("/cu118")
    unknown = make_plan(options(tmp_path, torch="cuda"), Platform("Linux", "x86_64"))
    assert torch_step(unknown).argv[-1].endswith("/cu126")


def test_plan_on_apple_silicon_installs_the_default_wheels(tmp_path):
    for choice in ("auto", "mps", "cpu"):
        steps = make_plan(options(tmp_path, torch=choice), Platform("Darwin", "arm64"))
        torch = torch_step(steps)
        assert "--index-url" not in torch.argv and torch.label == "Install PyTorch (macOS wheels, MPS)"


def test_plan_without_a_gpu_installs_cpu_wheels(tmp_path):
    for platform, choice in ((Platform("Linux", "x86_64"), "auto"), (Platform("Windows", "amd64"), "auto"),
                             (Platform("Linux", "aarch64", nvidia=True), "cpu")):
        torch = torch_step(make_plan(options(tmp_path, torch=choice), platform))
        assert torch.argv[-2:] == ("--index-url", CPU_INDEX) and "CPU" in torch.label


def test_nvdiffrast_is_offered_on_cuda_only_with_its_licence(tmp_path):
    steps = make_plan(options(tmp_path, nvdiffrast=True), Platform("Linux", "x86_64", nvidia=True))
    build = [s for s in steps if installer.NVDIFFRAST_SOURCE in s.argv]
    assert len(build) == 1 and "--no-build-isolation" in build[0].argv and "non-commercial" in build[0].label
    labels = [s.label for s in steps]
    assert labels.index(build[0].label) < labels.index("Install the Atelier backend")
    licence = installer.NVDIFFRAST_LICENCE
    assert "NVIDIA Source Code License" in licence and "non-commercial" in licence
    with pytest.raises(AddonError, match="nvdiffrast needs CUDA"):
        make_plan(options(tmp_path, nvdiffrast=True), Platform("Linux", "x86_64"))


@pytest.mark.parametrize("platform, choice, words", [
    (Platform("Darwin", "x86_64"), "auto", "Intel Macs"),
    (Platform("Linux", "x86_64", nvidia=True), "mps", "Apple silicon"),
    (Platform("Darwin", "arm64"), "cuda", "not available on macOS"),
    (Platform("Linux", "x86_64"), "rocm", "unknown PyTorch choice"),
])
def test_plan_refuses_what_cannot_work(tmp_path, platform, choice, words):
    with pytest.raises(AddonError, match=words) as info:
        make_plan(options(tmp_path, torch=choice), platform)
    assert info.value.hint


def test_bad_sources_and_pythons_are_refused_with_the_fix(tmp_path):
    empty = tmp_path / "not-a-checkout"
    empty.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    (other / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    wrong_file = tmp_path / "notes.txt"
    wrong_file.write_text("hello")
    cases = [
        (dict(source=str(empty)), "has no pyproject.toml"),
        (dict(source=str(other)), "'something-else', not 'atelier'"),
        (dict(source=str(tmp_path / "missing")), "does not exist"),
        (dict(source=str(wrong_file)), "not an atelier wheel or sdist"),
        (dict(source=""), "no backend source is set"),
        (dict(base_python=str(tmp_path / "missing" / "python3")), "the Python .* does not exist"),
        (dict(base_python=" "), "no Python is set"),
    ]
    for changes, words in cases:
        with pytest.raises(AddonError, match=words) as info:
            make_plan(options(tmp_path, **changes), Platform("Linux", "x86_64"))
        assert info.value.hint, words
    wheel = tmp_path / "atelier-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    assert make_plan(options(tmp_path, source=str(wheel)), Platform("Linux", "x86_64"))[4].argv[-1] == str(wheel)
    assert installer.default_source() == str(ROOT)


@pytest.mark.skipif(os.name != "posix", reason="a fake nvidia-smi shell script")
def test_detect_platform_reads_the_drivers_cuda_version(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho '| NVIDIA-SMI 570.86   Driver Version: 570.86   CUDA Version: 12.8 |'\n")
    fake.chmod(0o755)
    found = installer.detect_platform(which=lambda name: str(fake) if name == "nvidia-smi" else None)
    assert found.nvidia and found.cuda_driver == (12, 8) and "CUDA 12.8" in found.describe()
    assert not installer.detect_platform(which=lambda name: None).nvidia
    broken = tmp_path / "broken-smi"
    broken.write_text("not a program")  # not executable: a driver that does not answer counts as none
    assert not installer.detect_platform(which=lambda name: str(broken)).nvidia


def test_failures_are_explained_with_the_fix_and_the_log():
    step = Step("Install PyTorch (CPU wheels)", ("python",))
    cases = [
        ("ATELIER-CHECK: too-old 3.10.4", "Python 3.10.4 is too old"),
        ("/usr/bin/python3: No module named ensurepip", "has no pip"),
        ("The virtual environment was not created successfully because ensurepip is not available.", "has no pip"),
        ("WARNING: Retrying ... NewConnectionError('<pip._vendor...>: Failed to establish a new connection')\n"
         "ERROR: Could not find a version that satisfies the requirement torch>=2.4\n"
         "ERROR: No matching distribution found for torch>=2.4", "no network"),
        ("ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device", "disk is full"),
        ("ERROR: No matching distribution found for torch>=2.4", "pip found no torch>=2.4"),
        ("atelier models: error: cannot import sam_vit_b: /x is not a file — give the path of the weights file",
         "cannot import sam_vit_b: /x is not a file"),
        ("RuntimeError: operator torchvision::nms does not exist", "two different builds"),
        ("something odd\n", "Install PyTorch (CPU wheels) failed (exit code 1): something odd"),
    ]
    for output, words in cases:
        message, hint = installer.explain_failure(output, step, 1, "/logs/install.log")
        assert words in message, (output, message)
        assert "/logs/install.log" in hint, hint
    assert installer.parse_percent(" 45%|####      | 270M/605M [00:03<00:04]") == 0.45
    assert installer.parse_percent("Downloading torch-2.4.0-cp311.whl (200.5 MB)") is None


# -- running a plan -------------------------------------------------------------------------------------

def wait_for(predicate, timeout: float = 20.0, what: str = "the runner"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def test_a_run_reports_progress_and_writes_the_log(tmp_path):
    go = tmp_path / "go"
    half = ("import pathlib, time\nprint('Downloading thing.whl (1 MB)', flush=True)\n"
            "print('\\r 50%|#####     |', end='', flush=True)\n"
            f"deadline = time.time() + 20\nwhile not pathlib.Path({str(go)!r}).exists() and time.time() < deadline:\n"
            "    time.sleep(0.02)\nprint('\\r100%|##########|')\n")
    log = tmp_path / "logs" / "install.log"
    runner = Runner([Step("Download", (PY, "-c", half)), Step("Say done", (PY, "-c", "print('all good')"))], log)
    started = time.monotonic()
    runner.start()
    assert time.monotonic() - started < 0.5, "start() must return at once"
    state = wait_for(lambda: (s := runner.snapshot()).line.startswith("50%") and s, what="the 50% line")
    assert (state.status, state.step, state.total, state.label) == ("running", 1, 2, "Download")
    assert state.fraction == pytest.approx(0.25) and state.busy
    go.touch()
    assert runner.wait(20)
    state = runner.snapshot()
    assert (state.status, state.step, state.fraction, state.message) == ("done", 2, 1.0, "")
    assert state.line == "all good" and state.log_path == str(log)
    text = log.read_text()
    for words in ("step 1 of 2: Download", "Downloading thing.whl", "100%", "step 2 of 2: Say done", "all good",
                  "done"):
        assert words in text


def test_a_failed_step_stops_the_run_and_names_the_log(tmp_path):
    log = tmp_path / "install.log"
    never = tmp_path / "never"
    fail = "import sys\nprint('OSError: [Errno 28] No space left on device')\nsys.exit(1)"
    runner = Runner([Step("Fill the disk", (PY, "-c", fail)),
                     Step("Never", (PY, "-c", f"open({str(never)!r}, 'w')"))], log, folder=tmp_path)
    runner.start()
    assert runner.wait(20)
    state = runner.snapshot()
    assert state.status == "failed" and state.step == 1 and state.message == "the disk is full"
    assert str(log) in state.hint and str(tmp_path) in state.hint and "Traceback" not in state.message
    assert not never.exists() and "failed: the disk is full" in log.read_text()

    missing = Runner([Step("Run a missing Python", (str(tmp_path / "nope" / "python"), "-V"))], tmp_path / "b.log")
    missing.start()
    assert missing.wait(20)
    state = missing.snapshot()
    assert state.status == "failed" and "cannot run" in state.message and str(tmp_path / "b.log") in state.hint

    def refuse():
        raise AddonError("nvdiffrast needs CUDA (an NVIDIA GPU)", "untick it")
    refused = Runner(refuse, tmp_path / "c.log")
    refused.start()
    assert refused.wait(20)
    assert refused.snapshot().status == "failed" and refused.snapshot().message.startswith("nvdiffrast needs CUDA")


def test_cancel_stops_the_running_command_and_the_plan(tmp_path):
    never = tmp_path / "never"
    runner = Runner([Step("Sleep", (PY, "-c", "import time\nprint('sleeping', flush=True)\ntime.sleep(60)")),
                     Step("Never", (PY, "-c", f"open({str(never)!r}, 'w')"))], tmp_path / "install.log")
    runner.start()
    wait_for(lambda: runner.snapshot().line == "sleeping", what="the step to start")
    started = time.monotonic()
    runner.cancel()
    assert runner.wait(10), "cancel did not stop the command"
    assert time.monotonic() - started < 6
    state = runner.snapshot()
    assert state.status == "cancelled" and not state.busy and str(tmp_path / "install.log") in state.hint
    assert not never.exists() and "cancelled" in (tmp_path / "install.log").read_text()
