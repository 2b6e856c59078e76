"""`atelier models list|pull|import`: the weights manager."""

from __future__ import annotations

import argparse

from backend.cli.common import Report, command


def weights_table(rows: list[dict], indent: str = "") -> list[str]:
    """Lines of a table of `list_models()` / `shipped_models()` rows: status, name, size, licence, then the path
    (or, for a missing file, its description) and any notes. Column widths follow the content, so a long name
    or licence moves the columns instead of breaking them."""
    cells = []
    for row in rows:
        status = row.get("status") or ("present" if row["present"] else "missing")
        where = row.get("path") or "" if row["present"] else row.get("description") or ""
        tail = "  ".join(part for part in (where, row.get("notes") or "") if part)
        cells.append((status, row["name"], row.get("size_human") or "", row.get("licence") or "", tail))
    if not cells:
        return []
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    return [(f"{indent}{status:<{widths[0]}}  {name:<{widths[1]}}  {size:>{widths[2]}}  {licence:<{widths[3]}}"
             f"  {tail}").rstrip() for status, name, size, licence, tail in cells]


def shipped_rows() -> list[dict]:
    """What ships in the package, as `atelier models list` rows: the domain CLIP, then the shipped generator."""
    from backend.generate.shipped import shipped_generators
    from backend.models import shipped_models

    # The generator's row lives in backend.generate, a layer above backend.models: the two meet here, in the CLI.
    return shipped_models() + shipped_generators()


@command("models", "the weights manager: list what is present, pull (download) or import a local file")
def _models_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("list", "pull", "import"))
    parser.add_argument("name", nargs="?", help="a weights name from `atelier models list` (pull, import)")
    parser.add_argument("path", nargs="?", help="the local file to import (import)")


@_models_args.run
def _models(args, report: Report) -> None:
    from backend.errors import InvalidInputError
    from backend.models import import_file, store

    if args.action == "list":
        models = store.list_models()
        shipped = shipped_rows()
        # "models" keeps the catalogue rows the add-on's weights panel reads (pull / import by name); what ships
        # in the package has nothing to pull or import, so it comes apart.
        report["models"] = models
        report["shipped"] = shipped
        for line in weights_table(shipped + models):
            print(line)
        return
    if not args.name:
        raise InvalidInputError(f"`atelier models {args.action}` needs a weights name", hint="see `atelier models list`")
    if args.action == "pull":
        report["path"] = str(store.pull(args.name))
    else:
        if not args.path:
            raise InvalidInputError("`atelier models import NAME PATH` needs the path of the local file")
        report["path"] = str(import_file(args.name, args.path))
    print(report["path"])
