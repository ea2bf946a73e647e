"""A LotteryExperiment with DDP on two CPU processes (gloo); run by tests/test_lottery.py as
``python tests/ddp_lottery.py OUT`` (Lightning starts the second rank by running the same command)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from test_lottery import EXPERIMENT, Data, Net  # noqa: E402

if __name__ == "__main__":
    ddp = dataclasses.replace(EXPERIMENT, trainer={**EXPERIMENT.trainer, "devices": 2, "strategy": "ddp"})
    ddp.run(Net, Data(), seed=0, controls=("none", "random-prune"), out=sys.argv[1])
