"""``python -m ticketbench.cli``: the command without the start-up guard of ``python -m ticketbench``."""

import sys

from ticketbench.cli import main

sys.exit(main())
