"""`python build.py gpu-check` on a machine without a GPU: its one-line answer, its JSON and table (tiny CPU runs),
its targets, its failures, and what its preparation skips without a bundle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402

ROW_KEYS = {"job", "status", "seconds", "how", "target", "limit_s", "met", "detail", "why"}
REPORT_KEYS = {"schema", "date", "settings", "device", "prepared", "tests", "jobs", "skipped", "failures", "ok",
               "seconds"}


def test_without_a_gpu_build_py_says_so_in_one_line_and_exits_0():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU even where there is one
    done = subprocess.run([sys.executable, str(ROOT / "build.py"), "gpu-check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: no CUDA GPU here ("), done.stdout


def test_without_torch_it_says_so_too(monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "has_module", lambda module: module != "torch")
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"gpu-check: no CUDA GPU here (torch is not installed for {sys.executable}); nothing to check"]


def test_tiny_cpu_runs_write_the_report_and_print_the_table(tmp_path, capsys):
    report_path = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--device", "cpu", "--tiny", "--in-process", "--jobs", "render,search",
                           "--report", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert set(report) == REPORT_KEYS and report["schema"] == gpu_check.SCHEMA
    assert report["settings"] == "tiny" and report["ok"] is True and report["failures"] == []
    assert [r["job"] for r in report["jobs"]] == ["render", "search"]
    for row in report["jobs"]:
        assert set(row) == ROW_KEYS and row["status"] == "ok" and row["seconds"] > 0
        assert row["met"] is None  # tiny sizes: no target applies
    render, search = report["jobs"]
    assert render["detail"]["renderer"] == "torch" and render["detail"]["faces"] > 0
    assert search["target"] == "p50 < 2 ms at 100k shapes" and search["limit_s"] == 0.002
    assert search["detail"]["shapes"] == 300
    assert {"what": "cuda tests", "why": "no CUDA device in this run"} in report["skipped"]
    out = capsys.readouterr().out
    assert "| job | seconds | target | met? |" in out
    assert "| search | " in out and "| p50 < 2 ms at 100k shapes | n/a (tiny) |" in out
    assert "every CUDA path that ran passed" in out


@pytest.mark.parametrize("seconds, met", [(1.5, True), (2.5, False)])
def test_a_full_run_is_judged_against_the_issues_target(monkeypatch, seconds, met):
    monkeypatch.setitem(gpu_check.JOB_FUNCTIONS, "generate", lambda settings, device: {"seconds": seconds})
    row = gpu_check.run_job("generate", gpu_check.Settings(tiny=False), "cpu", 10.0)
    assert (row.status, row.seconds, row.limit_s, row.met) == ("ok", seconds, 2.0, met)
    report = gpu_check.build_report([row], [], None, {"device": "cpu"}, gpu_check.Settings(), 1.0)
    assert gpu_check.format_table(report).splitlines()[-1] == \
        f"| generate | {seconds:.4g} | < 2 s per shape at 128^3 | {'yes' if met else 'NO'} |"


def test_a_failing_job_fails_the_check_and_a_missing_module_is_skipped(monkeypatch, tmp_path, capsys):
    def broken(settings, device):
        raise RuntimeError("CUDA error: an illegal memory access")

    def missing(settings, device):
        raise ModuleNotFoundError("No module named 'faiss'", name="faiss")

    monkeypatch.setitem(gpu_check.JOB_FUNCTIONS, "render", broken)
    monkeypatch.setitem(gpu_check.JOB_FUNCTIONS, "search", missing)
    path = tmp_path / "r.json"
    assert gpu_check.main(["--device", "cpu", "--tiny", "--in-process", "--jobs", "render,search",
                           "--report", str(path)]) == 1
    report = json.loads(path.read_text())
    assert report["ok"] is False and report["failures"] == ["render"]
    render, search = report["jobs"]
    assert render["status"] == "failed" and "illegal memory access" in render["why"]
    assert search["status"] == "skipped" and "'faiss'" in search["why"] and "gpu-bundle" in search["why"]
    out = capsys.readouterr().out
    assert "SKIPPED search: module 'faiss' is not installed" in out and "FAILED: render" in out


def test_the_splat_row_runs_on_cuda_only(tmp_path):
    path = tmp_path / "r.json"
    assert gpu_check.main(["--device", "cpu", "--tiny", "--in-process", "--jobs", "splat", "--report", str(path)]) == 0
    (row,) = json.loads(path.read_text())["jobs"]
    assert row["job"] == "splat" and row["status"] == "skipped" and "CUDA only" in row["why"]


def test_unknown_jobs_are_named_with_the_choices(capsys):
    assert gpu_check.main(["--device", "cpu", "--jobs", "render,paint"]) == 2
    err = capsys.readouterr().err
    assert "unknown job(s) paint" in err and "stylize" in err


def test_a_cancelled_run_is_projected_from_the_steps_it_did():
    run = gpu_check.BoundedRun(60.0)
    run.start = time.perf_counter() - 3.0  # 3 s of set-up before the first step ended
    run.progress(1, 100)
    with pytest.raises(RuntimeError, match="before two steps"):
        run.projected()
    run.first -= 2.0  # the first step ended 2 s ago: 9 steps since, 2/9 s each
    run.progress(10, 100)
    seconds, how = run.projected()
    assert how == "projected from 10 of 100 steps"
    assert seconds == pytest.approx(1.0 + 99 * 2.0 / 9, abs=0.05)


def test_preparation_without_a_bundle_skips_with_the_fix(monkeypatch, tmp_path):
    present = gpu_check.has_module
    monkeypatch.setattr(gpu_check, "has_module", lambda m: m not in ("trimesh", "nvdiffrast") and present(m))
    items, _ = gpu_check.prepare(tmp_path / "bundle", time.time() + 60)
    by_name = {item.name: item for item in items}
    assert by_name["trimesh"].status == "skipped" and "python build.py gpu-bundle" in by_name["trimesh"].detail
    assert by_name["nvdiffrast"].status == "skipped" and "no source in" in by_name["nvdiffrast"].detail
    # backend.render.splat's gsplat path makes gsplat one of the packages to prepare.
    assert by_name["gsplat"].status == "present" if present("gsplat") else \
        (by_name["gsplat"].status == "skipped" and "needs gsplat" in by_name["gsplat"].detail)
    assert by_name["open-clip-torch"].status == "present"


def test_the_cuda_tests_it_runs_include_renderer_parity():
    names = {p.name for p in gpu_check.cuda_test_files()}
    assert {"test_nvdiffrast_parity.py", "test_rasterizer.py", "test_clip_load.py"} <= names
    assert "test_gpu_check.py" not in names


def test_a_failing_cuda_test_fails_the_check(monkeypatch, tmp_path):
    test_file = tmp_path / "test_planted.py"
    mark = "@pytest.mark." + "cuda"  # spelt apart: this file itself is not one that gpu-check runs
    test_file.write_text(f"import pytest\n\n\n{mark}\ndef test_planted():\n    assert 1 == 2\n\n\n"
                         "def test_not_marked():\n    pass\n")
    monkeypatch.setattr(gpu_check, "cuda_test_files", lambda: [test_file])
    tests = gpu_check.run_cuda_tests(dict(os.environ), 60)
    assert (tests["status"], tests["failed"], tests["passed"]) == ("failed", 1, 0)
    report = gpu_check.build_report([], [], tests, {"device": "cuda"}, gpu_check.Settings(), 1.0)
    assert report["ok"] is False and report["failures"] == ["cuda tests"]


def test_the_reconstruct_row_times_a_whole_reconstruction(tmp_path):
    path = tmp_path / "r.json"
    assert gpu_check.main(["--device", "cpu", "--tiny", "--in-process", "--jobs", "reconstruct",
                           "--report", str(path)]) == 0
    (row,) = json.loads(path.read_text())["jobs"]
    assert row["job"] == "reconstruct" and row["status"] == "ok" and row["seconds"] > 0
    assert set(row["detail"]["stages"]) >= {"prior", "gaussians", "mesh", "texture", "total"}
    assert row["detail"]["faces"] > 0
