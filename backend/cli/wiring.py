"""The `atelier` command's argparse wiring and its error contract (DESIGN §4).

Every subcommand takes --device, --clip, --seed, --report and --debug. Errors exit non-zero with one
readable line (a traceback only with --debug). Heavy modules are imported inside the subcommand that
needs them, so `atelier --help` and `atelier doctor` stay fast.
"""

from __future__ import annotations

import argparse
import sys
import time

# Each command module registers its subcommands in COMMANDS when imported; the order here is `--help`'s.
from backend.cli import serve, render, stylize, world, retrieve, segment, generate, models  # noqa: F401,I001
from backend.cli.common import COMMANDS, EXIT_ERROR, Report
from backend.errors import AtelierError, JobCancelled


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    common.add_argument("--clip", default=None,
                        help="CLIP spec: MODEL:TAG (e.g. ViT-B-32:openai), a local checkpoint path, tiny, tiny-rn or domain")
    common.add_argument("--seed", type=int, default=0, help="random seed")
    common.add_argument("--report", default=None, help="write a JSON report to this file")
    common.add_argument("--allow-download", action="store_true", help="let model weights download when missing")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    parser = argparse.ArgumentParser(prog="atelier", description="Atelier backend and tools")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, parents=[common], description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    report = Report(command=args.command)
    start = time.perf_counter()
    try:
        import torch

        torch.manual_seed(args.seed)
        report.setdefault("renderer", None)
        COMMANDS[args.command][2](args, report)
    except (AtelierError, ValueError, FileNotFoundError) as exc:
        if args.debug:
            raise
        message = str(exc) if not isinstance(exc, AtelierError) else exc.message + (f" — {exc.hint}" if exc.hint else "")
        print(f"atelier {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except (KeyboardInterrupt, JobCancelled):
        print(f"atelier {args.command}: cancelled", file=sys.stderr)
        return 130
    report["seconds"] = round(time.perf_counter() - start, 4)
    report.setdefault("device", args.device)
    report.write(args.report)
    return 0
