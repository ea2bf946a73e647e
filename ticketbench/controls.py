"""The controls of a lottery ticket: what changes when a ticket (a mask on the rewind point θ_k)
is turned into a baseline for it. One registry serves the IMP arms (``--control``) and the
sanity checks of pruning methods (``--sanity``):

- a fresh initialisation (``reinit``): the ticket's mask on weights drawn from another seed stream;
- shuffled masks (``random-prune``, ``shuffle``): the ticket's per-layer counts of kept weights,
  at positions drawn uniformly at random (one seed stream per level), on θ_k.

Heavy modules are imported where a control is applied, so the command line reads the names fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ticketbench.pruning.masks import Masks


@dataclass(frozen=True)
class Control:
    """One control: its name, the arm its run directory is named by, how figures show it, and its
    two transforms."""

    name: str
    arm: str
    label: str  # in figures and tables
    color: str  # in figures (a matplotlib color)
    fresh_init: bool = False  # train from an initialisation of the seed stream "reinit"
    shuffle: str | None = None  # seed stream of the random positions (None: the ticket's own mask)

    def init_seed(self, seed: int) -> int:
        """The seed the model is initialised from: the run's own, or the reinit stream's."""
        from ticketbench.seeding import derive_seed

        return derive_seed(seed, "reinit") if self.fresh_init else seed

    def masks(self, ticket: Masks, seed: int, level: int) -> Masks:
        """The masks this control trains at ``level``, given the ticket's."""
        if self.shuffle is None:
            return ticket
        from ticketbench.pruning.select import random_masks
        from ticketbench.seeding import generator

        return random_masks(ticket, {n: int(m.sum()) for n, m in ticket.items()}, generator(seed, self.shuffle, level))


TICKET = Control("none", "imp", "winning ticket", "tab:blue")
CONTROLS = {c.name: c for c in (TICKET, Control("reinit", "reinit", "random reinit", "tab:orange", fresh_init=True),
                                Control("random-prune", "random-prune", "random pruning", "tab:green",
                                        shuffle="random-prune"))}
SANITY = {c.name: c for c in (Control("shuffle", "+shuffle", "shuffled masks", "tab:purple", shuffle="shuffle"),
                              Control("reinit", "+reinit", "reinitialised", "tab:brown", fresh_init=True))}
ARMS = tuple(c.arm for c in CONTROLS.values())  # the arms of an IMP experiment's run directories
