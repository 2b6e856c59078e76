"""`python -m backend.server ...` is `atelier serve ...` (one parser, in backend/cli/wiring.py)."""

import sys

from backend.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
