"""`tools/blender_demo.py` (the Blender stage of `python build.py demo`), shrunk with --fast: it runs in its own
Blender-module process, where the add-on starts its own backend. The demo generates with the shipped generator and
never trains one: where this checkout has no shipped generator yet, a tiny one trained with the domain CLIP stands
in through $ATELIER_GENERATOR (which the backend the add-on starts inherits)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from addon_helpers import ROOT

SCRIPT = ROOT / "tools" / "blender_demo.py"
SHIPPED = ROOT / "backend" / "models" / "weights" / "generator_domain.pt"
PROMPTS = ("a photo of a chair", "a photo of a table", "a photo of a lamp")


def run_demo(*args: str, timeout: float = 480, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def generator_env(backend_py, tmp_path_factory, tiny_generator_flags) -> dict:
    """The environment the demo runs in: nothing added when the shipped generator is here, else
    $ATELIER_GENERATOR naming a tiny generator trained with the domain CLIP (seconds; plumbing only)."""
    if SHIPPED.is_file():
        return {}
    root = tmp_path_factory.mktemp("demo_generator")
    flags = list(tiny_generator_flags)
    flags[flags.index("--clip") + 1] = "domain"
    checkpoint = root / "generator_domain.pt"
    for args in (("world", str(root / "world"), "--shapes", "6", "--views", "0", "--size", "64", "--device", "cpu"),
                 ("train-generator", "--library", str(root / "world" / "library"), "--out", str(checkpoint), *flags)):
        done = subprocess.run([str(backend_py), "-m", "backend.cli", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"atelier {args[0]} failed: {done.stderr[-2000:]}"
    return {"ATELIER_GENERATOR": str(checkpoint)}


def test_the_fast_demo_writes_the_scene_renders_and_figures(backend_py, generator_env, tmp_path):
    out = tmp_path / "demo"
    done = run_demo("--fast", "--device", "cpu", "--out", str(out), "--backend-python", str(backend_py),
                    env=generator_env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "using the domain CLIP" in done.stdout or "real CLIP weights present" in done.stdout
    assert "training a generator" not in done.stdout and "train-generator" not in done.stdout
    assert "no training at demo time" in done.stdout
    for prompt in PROMPTS:
        assert f"generate from text {prompt!r}: 2 samples, 2 refinement steps, grid 32" in done.stdout
        assert f"  generate {prompt!r}: 2 shapes" in done.stdout
    assert "backend stopped" in done.stdout
    assert (out / "scene.blend").stat().st_size > 0
    figures = json.loads((out / "blender_demo.json").read_text())
    for job in ("stylize", "restyle"):
        assert figures[job]["steps"] == 2 and figures[job]["clip"] == "domain"
        assert isinstance(figures[job]["loss_first"], float) and isinstance(figures[job]["loss_last"], float)
    assert figures["index"]["shapes"] == 8
    assert figures["search_text"]["hits"] and figures["search_sketch"]["hits"]
    assert figures["search_sketch"]["mode"] == "sketch"
    assert "generator" not in figures and not list(out.glob("generator*.pt"))  # nothing trained
    generated = figures["generate"]
    assert [g["prompt"] for g in generated] == list(PROMPTS)
    for g in generated:
        assert g["clip"] == "domain" and g["samples"] == 2 and g["refine"] == 2 and g["checkpoint"] == ""
        assert len(g["objects"]) == 2 and g["object"] in g["objects"] and len(g["clip_scores"]) == 2
        assert isinstance(g["clip_score"], float) and g["clip_score"] == max(g["clip_scores"])
        assert isinstance(g["seconds"], float) and g["seconds"] > 0
        assert isinstance(g["faces"], int) and g["faces"] > 0
    renders = [out / path for path in figures["renders"]]
    assert len(renders) >= 9 and (out / "renders" / "scene.png") in renders
    assert (out / "renders" / "generated_three.png") in renders
    for g in generated:  # the best sample of each prompt is in the scene and rendered; the others were removed
        assert out / "renders" / f"{g['object'].replace(' ', '_').replace('.', '_')}.png" in renders
        for other in set(g["objects"]) - {g["object"]}:
            assert out / "renders" / f"{other.replace(' ', '_').replace('.', '_')}.png" not in renders
    for path in renders:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    assert any((out / "search").glob("text_0_*.png")) and any((out / "search").glob("sketch_0_*.png"))


@pytest.mark.parametrize("flags, env, words", [
    (("--generator", "/no/such/generator.pt"), {}, "--generator /no/such/generator.pt is not a file"),
    ((), {"ATELIER_GENERATOR": "/no/such/default.pt"}, "$ATELIER_GENERATOR names /no/such/default.pt, which is not"),
])
def test_a_missing_generator_stops_the_demo_before_any_job(backend_py, tmp_path, flags, env, words):
    done = run_demo("--fast", "--out", str(tmp_path / "demo"), "--backend-python", str(backend_py), *flags,
                    timeout=60, env=env)
    assert done.returncode == 1 and words in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "backend started" not in done.stdout


def test_without_the_shipped_generator_the_demo_says_how_to_train_it(backend_py, tmp_path):
    if SHIPPED.is_file():
        pytest.skip("this checkout holds the shipped generator")  # its absence cannot be made without deleting it
    done = run_demo("--fast", "--out", str(tmp_path / "demo"), "--backend-python", str(backend_py), timeout=60,
                    env={"ATELIER_GENERATOR": ""})
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"the shipped generator {SHIPPED} is missing: run `python build.py generator`" in done.stderr


def test_a_missing_backend_python_fails_with_one_line(tmp_path):
    done = run_demo("--fast", "--out", str(tmp_path / "demo"), "--backend-python", str(tmp_path / "nope" / "python"),
                    timeout=60)
    assert done.returncode == 1
    assert "error: the backend environment's python is missing" in done.stderr and "Traceback" not in done.stderr
