"""`atelier models list|pull|import`: the weights manager."""

from __future__ import annotations

import argparse

from backend.cli.common import Report, command

# ----------------------------------------------------------------------------------------- models
@command("models", "the weights manager: list what is present, pull (download) or import a local file")
def _models_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("list", "pull", "import"))
    parser.add_argument("name", nargs="?", help="a weights name from `atelier models list` (pull, import)")
    parser.add_argument("path", nargs="?", help="the local file to import (import)")


@_models_args.run
def _models(args, report: Report) -> None:
    from backend.errors import InvalidInputError
    from backend.models import store

    if args.action == "list":
        models = store.list_models()
        report["models"] = models
        for m in models:
            print(f"{'present' if m['present'] else 'missing':<8} {m['name']:<22} {m.get('size_human', ''):>9}  "
                  f"{m.get('licence', '')}  {m.get('path') or ''}")
        return
    if not args.name:
        raise InvalidInputError(f"`atelier models {args.action}` needs a weights name", hint="see `atelier models list`")
    if args.action == "pull":
        report["path"] = str(store.pull(args.name))
    else:
        if not args.path:
            raise InvalidInputError("`atelier models import NAME PATH` needs the path of the local file")
        report["path"] = str(store.import_file(args.name, args.path))
    print(report["path"])
