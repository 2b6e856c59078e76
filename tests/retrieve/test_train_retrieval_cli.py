"""`atelier train-retrieval` and `atelier eval-retrieval` end to end on tiny models, and their bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from taskformer_helpers import one_thread, tiny_world, module_home  # noqa: F401  (fixtures)

from backend.cli import main
from backend.models import load_clip, save_clip_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--steps", "2", "--batch", "4", "--device", "cpu", "--extra-sketches", "2"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_world(tmp_path_factory.mktemp("world") / "data")


@pytest.fixture(scope="module")
def trained(world: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ckpt")
    code = main(["train-retrieval", "--data", str(world), "--out", str(out / "tf.pt"), "--clip", "tiny",
                 "--report", str(out / "report.json"), *FAST])
    assert code == 0
    return out / "tf.pt", json.loads((out / "report.json").read_text())


def test_train_retrieval_with_photos(world: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("ATELIER_HOME", str(tmp_path / "home"))  # the cut-out photos' cache
    assert main(["train-retrieval", "--data", str(world), "--out", str(tmp_path / "tf.pt"), "--clip", "tiny",
                 "--photo-weight", "0.5", "--extra-photos", "1", "--no-eval", "--report", str(tmp_path / "report.json"), *FAST]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["config"]["photo_weight"] == 0.5 and report["losses_first"]["photo"] > 0
    # The saliency cuts and the prompt cuts ("a red chair", by the model's CLIP) of the dataset's photos and of
    # one new photo a shape (drawn once), each cached once.
    assert report["config"]["extra_photos"] == 1
    assert len(list((tmp_path / "home" / "cache" / "photo_crops").glob("*.pt"))) == 5


def _check_recall(recall: dict, modes=("sketch", "sketch/views", "text", "sketch+text", "photo")) -> None:
    assert set(recall) == set(modes)  # the report's keys are sorted
    for values in recall.values():
        assert set(values) == {"r1", "r5", "r10"}
        assert 0 <= values["r1"] <= values["r5"] <= values["r10"] <= 1


def test_train_retrieval_writes_checkpoint_and_report(trained):
    path, report = trained
    assert path.is_file()
    assert report["command"] == "train-retrieval" and report["device"] == "cpu" and report["clip"] == "tiny"
    assert report["steps"] == 2 and report["train_shapes"] == 8 and report["gallery"] == 8
    assert report["losses_first"]["lines"] > 0 and report["config"]["lines_weight"] == 3.0  # the default recipe
    for key in ("seconds", "renderer", "loss_first", "loss_last", "seconds_per_step", "trainable", "config"):
        assert key in report
    _check_recall(report["recall"])


def test_eval_retrieval_reports_recall_per_mode(trained, world: Path, tmp_path: Path, capsys):
    path, train_report = trained
    report = tmp_path / "eval.json"
    assert main(["eval-retrieval", "--data", str(world), "--checkpoint", str(path), "--device", "cpu",
                 "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["method"] == "taskformer" and data["clip"] == "tiny" and data["split"] == "test"
    _check_recall(data["recall"])
    assert data["recall"] == train_report["recall"]  # the same model, the same protocol
    assert "sketch+text" in capsys.readouterr().out


def test_eval_retrieval_zero_shot_baseline(world: Path, tmp_path: Path):
    report = tmp_path / "zero.json"
    assert main(["eval-retrieval", "--data", str(world), "--zero-shot", "--clip", "tiny", "--device", "cpu",
                 "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["method"] == "zero-shot" and data["clip"] == "tiny" and data["checkpoint"] is None
    _check_recall(data["recall"])


def test_train_retrieval_resume_continues_the_run(trained, world: Path, tmp_path: Path):
    path, _ = trained
    copy = tmp_path / "run.pt"
    copy.write_bytes(path.read_bytes())
    report = tmp_path / "resume.json"
    assert main(["train-retrieval", "--data", str(world), "--out", str(copy), "--resume", str(copy), "--steps", "3",
                 "--no-eval", "--device", "cpu", "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert (data["start_step"], data["steps"], data["clip"]) == (2, 3, "tiny") and "recall" not in data


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train-retrieval", "--data", "{tmp}/missing", "--out", "{tmp}/x.pt"], "does not exist"),
        (["train-retrieval", "--data", "{tmp}", "--out", "{tmp}/x.pt"], "no world dataset"),
        (["train-retrieval", "--data", "{one}", "--out", "{tmp}/x.pt"], "'test' split .* holds no shapes"),
        (["eval-retrieval", "--data", "{one}", "--zero-shot"], "'test' split .* holds no shapes"),
        (["eval-retrieval", "--data", "{world}", "--checkpoint", "{clipckpt}"], "not a TASK-former checkpoint"),
        (["eval-retrieval", "--data", "{world}", "--checkpoint", "{tmp}/none.pt"], "does not exist"),
        (["eval-retrieval", "--data", "{world}", "--checkpoint", "{ckpt}", "--clip", "tiny-rn"],
         "built from the CLIP 'tiny', not 'tiny-rn'"),
        (["train-retrieval", "--data", "{world}", "--out", "{tmp}/x.pt", "--resume", "{ckpt}", "--clip", "domain"],
         "built from the CLIP 'tiny', not 'domain'"),
        (["train-retrieval", "--data", "{world}", "--out", "{tmp}/x.pt", "--resume", "{ckpt}", "--lr", "0.01"],
         "keeps its recipe"),
        (["train-retrieval", "--data", "{world}", "--out", "{tmp}/x.pt", "--resume", "{ckpt}", "--init", "{ckpt}"],
         "exclude each other"),
        (["train-retrieval", "--data", "{world}", "--out", "{tmp}/x.pt", "--steps", "0"], "steps must be"),
        (["train-retrieval", "--data", "{world}", "--out", "{tmp}/x.pt", "--photo-weight", "-1"],
         "photo_weight must be"),
        (["train-retrieval", "--data", "{world}", "--out", "{tmp}/x.pt", "--lines-weight", "-1"],
         "lines_weight must be"),
        (["train-retrieval", "--data", "{world}", "--out", "{tmp}/x.pt", "--extra-sketches", "-1"],
         "extra_sketches must be"),
        (["eval-retrieval", "--data", "{world}"], "exactly one of --checkpoint"),
        (["eval-retrieval", "--data", "{world}", "--zero-shot", "--clip", "nonsense"], "unknown CLIP spec"),
    ],
)
def test_bad_input_is_one_readable_line(argv, message, trained, world, tmp_path, capsys):
    one = tiny_world(tmp_path / "one", shapes=1) if "{one}" in argv else None
    clipckpt = save_clip_checkpoint(load_clip("tiny"), tmp_path / "clip.pt") if "{clipckpt}" in argv else None
    values = {"{tmp}": str(tmp_path), "{world}": str(world), "{ckpt}": str(trained[0]), "{one}": str(one),
              "{clipckpt}": str(clipckpt)}

    def fill(arg: str) -> str:
        for key, value in values.items():
            arg = arg.replace(key, value)
        return arg

    code = main([fill(a) for a in argv] + ["--device", "cpu", "--clip", "tiny"] * ("--clip" not in argv and
                                                                                   "--resume" not in argv and
                                                                                   "--checkpoint" not in argv))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    last = err[-1]
    assert "Traceback" not in "\n".join(err) and last.startswith(f"atelier {argv[0]}: error:")
    assert re.search(message, last), last


def test_help_states_the_training_defaults(capsys):
    """The CLI's help names TrainConfig's defaults without importing torch; they must not drift apart."""
    from backend.retrieve.train import TrainConfig

    with pytest.raises(SystemExit):
        main(["train-retrieval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    defaults = TrainConfig()
    for flag, value in (("--steps", defaults.steps), ("--batch", defaults.batch), ("--lr", defaults.lr),
                        ("--train-layers", defaults.train_layers), ("--beta", defaults.beta),
                        ("--tau-plus", defaults.tau_plus), ("--photo-weight", defaults.photo_weight)):
        found = re.search(re.escape(flag) + r" [A-Z_]+ [^(]*\(default ([-0-9.e]+)[;)]", text)
        assert found and float(found.group(1)) == value, flag
