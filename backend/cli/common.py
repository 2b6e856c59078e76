"""What every `atelier` subcommand shares (DESIGN §4): the command registry, the JSON report, progress bars
and the --device resolution. The argparse wiring and the error contract are in `backend/cli/wiring.py`."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

EXIT_ERROR = 2


# name -> (help, add_arguments(parser), run(args, report) -> None)
COMMANDS: dict[str, tuple[str, Callable, Callable]] = {}


def command(name: str, help: str):
    """Registers a subcommand: the decorated function adds its arguments; its `.run` does the work."""

    def register(add_arguments: Callable) -> Callable:
        if name in COMMANDS:
            raise ValueError(f"duplicate atelier subcommand {name!r}")

        def bind(run: Callable) -> Callable:
            COMMANDS[name] = (help, add_arguments, run)
            return run

        add_arguments.run = bind
        return add_arguments

    return register


class Report(dict):
    """The JSON report every subcommand writes with --report: command, seconds, device, renderer, figures."""

    def write(self, path: str | None) -> None:
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(json.dumps(self, indent=2, sort_keys=True, default=str) + "\n")


def progress_bar(total: int, desc: str, unit: str = "step", delay: float = 0.0):
    """A tqdm-backed `progress(step, total, **metrics)` callback and the bar to close (shown only once
    `delay` seconds have passed, so a run that fails at once prints nothing but its error line)."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr, delay=delay)

    def progress(step: int, total_: int, **metrics: float) -> None:
        bar.total = total_
        bar.n = step
        if metrics:
            bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in metrics.items()}, refresh=False)
        # tqdm's refresh() ignores `delay` and does not record the print, so close() would leave the bar on screen
        # (glued to an error line that follows): honour the delay here and record the print.
        if time.time() - bar.start_t >= delay:
            bar.refresh()
            bar.last_print_t = time.time()

    return progress, bar


class LazyBar:
    """A `progress(step, total, **metrics)` whose bar appears at the first step: nothing is printed while the
    models load, so a load that fails prints only its error line. `close()` it when done."""

    def __init__(self, desc: str):
        self.desc = desc
        self._progress = self._bar = None

    def __call__(self, step: int, total: int, **metrics: float) -> None:
        if self._bar is None:
            self._progress, self._bar = progress_bar(total, self.desc)
        self._progress(step, total, **metrics)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def resolve(args, report: Report):
    """The torch device for this run, recorded in the report with the renderer it gets by default."""
    from backend.devices import resolve_device
    from backend.render.rasterizer import renderer_name

    device = resolve_device(args.device)
    report["device"] = str(device)
    report["renderer"] = renderer_name(device)
    return device


def staged_progress_bars():
    """A `progress(step, total, stage=..., **metrics)` callback showing one bar per stage, and a close()."""
    current: dict = {}

    def progress(step: int, total: int, stage: str = "", **metrics) -> None:
        if current.get("stage") != stage:
            if "bar" in current:
                current["bar"].close()
            current["progress"], current["bar"] = progress_bar(total, stage or "run")
            current["stage"] = stage
        current["progress"](step, total, **{k: v for k, v in metrics.items() if isinstance(v, (int, float))})

    def close() -> None:
        if "bar" in current:
            current["bar"].close()

    return progress, close
