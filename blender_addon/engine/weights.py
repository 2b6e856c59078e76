"""The weights manager of the preferences: which models exist, their sizes and licences, download, import. No bpy.

The add-on cannot import the backend, so it runs the configured backend Python:
`PYTHON -m backend.cli models list --report FILE`, `models pull NAME`, `models import NAME PATH`, one at a
time, in an `installer.Runner` (own thread, output streamed to a log, progress from the download bar the
pull prints). Blender's main thread calls `poll()` to learn the outcome; `rows` is the newest list.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import AddonError
from .installer import Runner, RunState, Step, child_env
from .supervisor import check_python

ROW_KEYS = ("name", "kind", "present", "path", "size", "size_human", "licence", "description", "url")
"""What each row of `models list`'s report carries (backend.models.store.list_models)."""


@dataclass
class Action:
    """The command the manager runs (or ran last)."""

    kind: str
    """list | pull | import."""
    name: str = ""
    """The weights name (pull, import)."""
    path: str = ""
    """The local file (import)."""

    def describe(self) -> str:
        return {"list": "Listing the models", "pull": f"Downloading {self.name}",
                "import": f"Importing {self.name} from {self.path}"}[self.kind]


class WeightsManager:
    """One manager per add-on session: `refresh()`, `pull(name)`, `import_file(name, path)`, then `poll()`."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        """The models as the last successful `models list` reported them."""
        self.listed_with = ""
        """The backend Python that listed `rows`."""
        self.action: Action | None = None
        self.runner: Runner | None = None
        self.message = ""
        """What the last action did, or why it failed."""
        self.hint = ""
        self.failed = False
        self._report: Path | None = None
        self._log_dir: Path | None = None
        self._python = ""
        self._env: dict[str, str] | None = None
        self._done = ""
        """"Downloaded X" / "Imported X": said again once the list that follows is in."""

    # -- actions (main thread) -------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.runner is not None and self.runner.snapshot().busy

    def state(self) -> RunState | None:
        return None if self.runner is None else self.runner.snapshot()

    def refresh(self, python: str, log_dir: Path, env: dict[str, str] | None = None) -> None:
        """Lists the models with `python` (the backend's); returns at once."""
        self._start(Action("list"), python, log_dir, env)

    def pull(self, python: str, name: str, log_dir: Path, env: dict[str, str] | None = None) -> None:
        """Downloads weights `name` into the backend's cache; the list is refreshed when it is done."""
        if not name:
            raise AddonError("no model is named to download", code="weights")
        self._start(Action("pull", name), python, log_dir, env)

    def import_file(self, python: str, name: str, path: str, log_dir: Path,
                    env: dict[str, str] | None = None) -> None:
        """Checks that `path` holds weights `name` and copies it into the backend's store (`models import`)."""
        if not name:
            raise AddonError("no model is named to import", code="weights")
        file = Path(path.strip()).expanduser() if path and path.strip() else None
        if file is None:
            raise AddonError(f"no file was chosen for {name}", "choose the weights file", code="weights_file")
        if not file.is_file():
            raise AddonError(f"cannot import {name}: {file} is not a file", "choose the weights file (.pt, .pth, "
                             ".bin or .safetensors)", code="weights_file")
        self._start(Action("import", name, str(file)), python, log_dir, env)

    def cancel(self) -> None:
        if self.runner is not None:
            self.runner.cancel()

    def _start(self, action: Action, python: str, log_dir: Path, env: dict[str, str] | None) -> None:
        if self.busy:
            raise AddonError(f"{self.action.describe()} is still running", "wait for it, or cancel it",
                             code="weights_busy")
        python_path = str(check_python(python))
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        cli = (python_path, "-m", "backend.cli", "models")
        report = log_dir / "models-list.json"
        if action.kind == "list":
            report.unlink(missing_ok=True)
            argv = (*cli, "list", "--report", str(report))
        elif action.kind == "pull":
            argv = (*cli, "pull", action.name)
        else:
            argv = (*cli, "import", action.name, action.path)
        self.action, self._report, self._log_dir, self._python = action, report, log_dir, python_path
        self._env = env
        self.message, self.hint, self.failed = "", "", False
        if action.kind != "list":
            self._done = ""
        self.runner = Runner([Step(action.describe(), argv)], log_dir / "weights.log",
                             env=child_env(base=env), cwd=log_dir, folder=log_dir,
                             title=f"atelier models {action.kind}")
        self.runner.start()

    # -- outcome (main thread) -------------------------------------------------------------------------

    def poll(self) -> bool:
        """Takes in a finished action; True when something the UI shows changed (then redraw)."""
        if self.runner is None or self.action is None:
            return False
        state = self.runner.snapshot()
        if state.busy:
            return True  # the progress line moves
        runner, action = self.runner, self.action
        self.runner = None
        if state.status == "cancelled":
            self.message, self.hint, self.failed = f"{action.describe()}: cancelled", "", False
            return True
        if state.status != "done":
            self.message, self.hint, self.failed, self._done = state.message, state.hint, True, ""
            return True
        if action.kind == "list":
            try:
                rows = json.loads(self._report.read_text(encoding="utf-8"))["models"]
                if not isinstance(rows, list) or not all(isinstance(r, dict) and "name" in r for r in rows):
                    raise ValueError("`models` is not a list of models")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self.message = f"the backend's model list could not be read: {exc}"
                self.hint, self.failed = f"see {runner.log_path}", True
                return True
            self.rows = [{key: row.get(key) for key in ROW_KEYS} for row in rows]
            self.listed_with = self._python
            present = sum(1 for row in self.rows if row["present"])
            self.message = (f"{self._done + '; ' if self._done else ''}{len(self.rows)} models, {present} present "
                            f"(listed {time.strftime('%H:%M:%S')})")
            self._done = ""
            return True
        # The list that follows shows where the file went and that it is present now.
        self._start(Action("list"), self._python, self._log_dir, self._env)
        self._done = self.message = f"{'Downloaded' if action.kind == 'pull' else 'Imported'} {action.name}"
        return True

    def row(self, name: str) -> dict | None:
        return next((row for row in self.rows if row["name"] == name), None)
