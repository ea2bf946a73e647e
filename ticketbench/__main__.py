"""``python -m ticketbench``: the ``ticketbench`` command (how the sweep starts its jobs)."""

import sys

from ticketbench.cli import main

sys.exit(main())
