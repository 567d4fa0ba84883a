"""``python -m hivemem``: the command line (see :mod:`hivemem._cli.main`)."""

from __future__ import annotations

import sys

from hivemem._cli.main import main

if __name__ == "__main__":
    sys.exit(main())
