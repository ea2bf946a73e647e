"""ticketbench: a reproducibility benchmark suite for the Lottery Ticket Hypothesis."""

from __future__ import annotations

from typing import Any

from ticketbench.logs import show_lines

__version__ = "0.1.0"
__all__ = ["LotteryExperiment", "LotteryTicket", "magnitude_masks"]
show_lines()  # progress lines on standard output, unless the program configured logging itself


def __getattr__(name: str) -> Any:
    """The public names, imported on first use (Lightning is not loaded by the command line's start)."""
    if name == "LotteryTicket":
        from ticketbench.callback import LotteryTicket

        return LotteryTicket
    if name == "LotteryExperiment":
        from ticketbench.lottery import LotteryExperiment

        return LotteryExperiment
    if name == "magnitude_masks":
        from ticketbench.pruning.magnitude import magnitude_masks

        return magnitude_masks
    raise AttributeError(f"module 'ticketbench' has no attribute {name!r}")
