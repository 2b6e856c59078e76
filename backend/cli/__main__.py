"""`python -m backend.cli ...` is `atelier ...`."""

import sys

from backend.cli.wiring import main

sys.exit(main())
