"""The `atelier` command (DESIGN §4): `main` is the console script (`atelier = "backend.cli:main"`).

`wiring.py` builds the parser and keeps the error contract; `common.py` holds what every subcommand shares;
the other modules hold the subcommands, grouped by job.
"""

from backend.cli.wiring import build_parser, main

__all__ = ["build_parser", "main"]
