"""ticketbench: a reproducibility benchmark suite for the Lottery Ticket Hypothesis."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["LotteryExperiment", "LotteryTicket"]


def __getattr__(name: str) -> Any:
    """The public classes, imported on first use (Lightning is not loaded by the command line's start)."""
    if name == "LotteryTicket":
        from ticketbench.callback import LotteryTicket

        return LotteryTicket
    if name == "LotteryExperiment":
        from ticketbench.lottery import LotteryExperiment

        return LotteryExperiment
    raise AttributeError(f"module 'ticketbench' has no attribute {name!r}")
