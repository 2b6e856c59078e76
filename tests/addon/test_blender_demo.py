"""`tools/blender_demo.py` (the Blender stage of `python build.py demo`), shrunk with --fast: it runs in its own
Blender-module process, where the add-on starts its own backend."""

from __future__ import annotations

import json
import subprocess
import sys

from addon_helpers import ROOT

SCRIPT = ROOT / "tools" / "blender_demo.py"


def run_demo(*args: str, timeout: float = 480) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_the_fast_demo_writes_the_scene_renders_and_figures(backend_py, tmp_path):
    out = tmp_path / "demo"
    done = run_demo("--fast", "--device", "cpu", "--out", str(out), "--backend-python", str(backend_py))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "using the domain CLIP" in done.stdout or "real CLIP weights present" in done.stdout
    assert "training a generator on the 8-shape library with the domain CLIP" in done.stdout
    assert "generate from text 'a photo of a chair' with the domain CLIP (no real weights" in done.stdout
    assert "  generate: 2 shapes" in done.stdout and "backend stopped" in done.stdout
    assert (out / "scene.blend").stat().st_size > 0
    figures = json.loads((out / "blender_demo.json").read_text())
    for job in ("stylize", "restyle"):
        assert figures[job]["steps"] == 2 and figures[job]["clip"] == "domain"
        assert isinstance(figures[job]["loss_first"], float) and isinstance(figures[job]["loss_last"], float)
    assert figures["index"]["shapes"] == 8
    assert figures["search_text"]["hits"] and figures["search_sketch"]["hits"]
    assert figures["search_sketch"]["mode"] == "sketch"
    generate = figures["generate"]
    assert generate["prompt"] == "a photo of a chair" and generate["clip"] == "domain" and generate["samples"] == 2
    assert generate["refine"] == 2 and len(generate["objects"]) == 2
    assert all(isinstance(x, float) for x in generate["clip_score_before"] + generate["clip_score_after"])
    assert figures["generator"]["shapes"] == 8 and figures["generator"]["reused"] is False
    assert (out / "generator_fast.pt").stat().st_size > 0
    renders = [out / path for path in figures["renders"]]
    assert len(renders) >= 7 and (out / "renders" / "scene.png") in renders
    for name in generate["objects"]:
        assert out / "renders" / f"{name.replace(' ', '_').replace('.', '_')}.png" in renders
    for path in renders:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    assert any((out / "search").glob("text_0_*.png")) and any((out / "search").glob("sketch_0_*.png"))


def test_a_missing_backend_python_fails_with_one_line(tmp_path):
    done = run_demo("--fast", "--out", str(tmp_path / "demo"), "--backend-python", str(tmp_path / "nope" / "python"),
                    timeout=60)
    assert done.returncode == 1
    assert "error: the backend environment's python is missing" in done.stderr and "Traceback" not in done.stderr
