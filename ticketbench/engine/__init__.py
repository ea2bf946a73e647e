"""The one IMP engine: arm kinds (what a level starts from and what it leaves for the next),
runners (how a level trains: the suite's stacked replicas, or any LightningModule with
:class:`~ticketbench.LotteryTicket`), observers (the terminal, W&B), and the level loop that drives
them (:func:`ticketbench.engine.loop.run_levels`)."""
