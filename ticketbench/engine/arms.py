"""Arm kinds: where each level of an arm starts, and what a finished level leaves for the next.

Level 0 of the winning tickets trains the dense network from θ0 and captures θ_k at the rewind
step k. Every later level L starts from the mask that level L-1 left (its final weights pruned by
magnitude, one round of the schedule), the kept weights rewound to θ_k and the step at k. What is
rewound: every parameter and buffer (θ_k, BatchNorm statistics included) and the learning-rate
schedule (positioned at k); the optimizer state only when the protocol rewinds it
(``optimizer.at_rewind: rewind``) — by default each level starts with empty momentum / Adam
moments, as in Frankle & Carbin and open_lth.

Controls read the winning-ticket run of the same protocol and seed, level by level, and start at
level 1 (their level 0 would be the dense network again): ``reinit`` puts the ticket's mask of
level L on a fresh initialisation drawn from another seed stream; ``random-prune`` a uniformly
random mask with the ticket's per-layer counts, on θ_k. A pruning method's arm lives in
:mod:`ticketbench.engine.method_arm`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ticketbench.config import PruningConfig
from ticketbench.controls import CONTROLS, TICKET, Control
from ticketbench.errors import RunError
from ticketbench.pruning.masks import Masks, apply_masks, full_masks
from ticketbench.pruning.schedule import next_masks
from ticketbench.storage.directory import Protocol
from ticketbench.storage.run_dir import RunDir
from ticketbench.training.level import LevelResult


class Network:
    """What the arms need of a protocol's network: the protocol itself (it names the run
    directories), a seeded initialisation, the pruned tensors with their pruning roles, and one
    round of its magnitude pruning. Subclasses: the suite's tasks, a user's module."""

    protocol: Protocol
    pruning: PruningConfig
    rewind_step: int
    rewinds_optimizer: bool  # whether a level also starts from the optimizer state at step k

    def build(self, seed: int) -> nn.Module:
        raise NotImplementedError

    def roles(self, model: nn.Module) -> dict[str, str]:
        """The pruned tensors of ``model`` by name, each with its pruning role."""
        raise NotImplementedError

    def next_masks(self, model: nn.Module, masks: Masks) -> Masks:
        """One round of magnitude pruning of ``model``'s current weights under ``masks``."""
        return next_masks(model, masks, self.roles(model), self.pruning)


@dataclass
class Start:
    """Where a level begins: the masked model at its rewind point, its masks, the step, and the
    optimizer state to resume (None: a fresh optimizer); ``about``: extra fields of its record."""

    model: nn.Module
    masks: Masks
    step: int
    optimizer_state: dict | None = None
    about: dict = field(default_factory=dict)


def require_ticket(imp: RunDir, level: int, control: str) -> None:
    """Controls train on the winning-ticket run's masks: refuse clearly when they are not there yet."""
    if not imp.mask_path(level).is_file():
        raise RunError(f"level {level} of the {control} control needs the winning-ticket mask "
                       f"{imp.mask_path(level)}; run the same command with --control none first")


@dataclass
class Arm:
    """One run directory trained level by level: ``levels`` asked for, ``todo`` those without a
    record yet. Subclasses say where a level starts (:meth:`start`) and what a finished one leaves
    (:meth:`finish`); :meth:`prepare` writes (or checks) the run directory's meta.json."""

    network: Network
    seed: int
    name: str
    out: Path
    levels: list[int]
    run: RunDir = field(init=False)
    imp: RunDir = field(init=False)  # the winning tickets of this seed
    todo: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.run = RunDir.for_arm(self.out, self.network.protocol, self.seed, self.name)
        self.imp = RunDir.for_arm(self.out, self.network.protocol, self.seed, TICKET.arm)
        self.todo = [level for level in self.levels if not self.run.has_level(level)]

    @property
    def finished(self) -> str:
        """What to say when every level asked for is done."""
        return f"all {len(self.levels)} levels already finished"

    @property
    def noise(self) -> int:
        """The seed of this arm's data order."""
        return self.seed

    def steps(self, level: int) -> int:
        """The optimizer steps of ``level`` (from θ0 at level 0, from the rewind step after)."""
        return self.network.protocol.max_steps - (self.network.rewind_step if level else 0)  # type: ignore[attr-defined]

    def captures_rewind(self, level: int) -> bool:
        """Whether ``level`` takes θ_k at the rewind step (level 0 of IMP)."""
        return level == 0

    def prepare(self) -> None:
        raise NotImplementedError

    def check(self) -> int | None:
        """Check the records already written (each against the schema); the first diverged level
        (the arm trains no further), if any."""
        self.run.records()
        return self.run.diverged_level()

    def done(self, level: int) -> bool:
        return self.run.has_level(level)

    def start(self, level: int, data: object) -> Start:
        """The start of ``level`` (``data``: the runner's training data of this arm's seed)."""
        raise NotImplementedError

    def begin(self, level: int, start: Start) -> None:
        """Before ``level`` trains: its mask is written."""
        self.run.save_masks(level, start.masks)

    def keep(self, level: int, start: Start, result: LevelResult, record: dict[str, Any], levels: int) -> bool:
        """Write what the trained ``level`` leaves: θ_k (level 0), the next mask, its record (last:
        it marks the level done); ``levels``: how many the protocol asks. Whether θ_k was written."""
        if level == 0:
            self.run.save_rewind(result.rewind_state, result.rewind_optimizer_state)
        if not result.diverged:  # a diverged arm stops: nothing to prune from non-finite weights
            self.finish(level, start)
        first = self.levels[0]
        self.run.ask_levels(levels, self.levels if self.levels != list(range(first, levels)) else None)
        self.run.save_record(record)
        self.run.progress_path(level).unlink(missing_ok=True)
        return level == 0

    def finish(self, level: int, start: Start) -> None:
        """After ``level`` trained without diverging (``start.model`` holds its final weights)."""

    def rewound(self, seed: int, level: int, fresh: bool) -> tuple[nn.Module, dict | None]:
        """The network of ``seed`` at the start of ``level``: θ0, or θ_k of the winning tickets
        (with the optimizer state at k when the protocol rewinds it) unless ``fresh``."""
        net = self.network
        model = net.build(seed)
        if level == 0 or fresh:
            return model, None
        model.load_state_dict(self.imp.load_rewind(model.state_dict() if net.rewind_step == 0 else None))
        return model, self.imp.load_rewind_optimizer() if net.rewinds_optimizer else None


@dataclass
class TicketArm(Arm):
    """The winning tickets: each level's mask is one magnitude round of the level before."""

    extra_meta: dict = field(default_factory=dict)  # further meta.json fields (a user module's class)

    def prepare(self) -> None:
        roles = self.network.roles(self.network.build(self.seed))
        self.run.start(self.network.protocol, self.seed, self.name, 0, roles, control=TICKET.name,
                       **self.extra_meta)

    def start(self, level: int, data: object) -> Start:
        model, optimizer_state = self.rewound(self.seed, level, fresh=False)
        names = list(self.network.roles(model))
        masks = full_masks(model, names) if level == 0 else self.run.load_masks(level, model, names)
        if level > 1 and self.run.mask_path(level - 1).is_file():
            before = self.run.load_masks(level - 1, model, names)
            revived = [n for n in names if bool((masks[n] & ~before[n]).any())]
            if revived:
                raise RunError(f"{self.run.mask_path(level)} keeps weights of {revived[0]} that level {level - 1} "
                               f"pruned; a mask was edited or copied: remove it with the records from level "
                               f"{level - 1} on (the same command trains them again)")
        apply_masks(model, masks)
        return Start(model, masks, 0 if level == 0 else self.network.rewind_step, optimizer_state)

    def finish(self, level: int, start: Start) -> None:
        self.run.save_masks(level + 1, self.network.next_masks(start.model, start.masks))


@dataclass
class ControlArm(Arm):
    """A control of the winning tickets (``reinit`` or ``random-prune``) at their levels."""

    control: Control = TICKET
    extra_meta: dict = field(default_factory=dict)

    def prepare(self) -> None:
        roles = self.network.roles(self.network.build(self.seed))
        self.run.start(self.network.protocol, self.seed, self.name, 1, roles, control=self.control.name,
                       **self.extra_meta)

    def start(self, level: int, data: object) -> Start:
        control = self.control
        model, optimizer_state = self.rewound(control.init_seed(self.seed), level, fresh=control.fresh_init)
        require_ticket(self.imp, level, control.name)
        masks = control.masks(self.imp.load_masks(level, model, list(self.network.roles(model))), self.seed, level)
        apply_masks(model, masks)
        return Start(model, masks, self.network.rewind_step, optimizer_state)


def imp_arm(network: Network, out: Path, seed: int, control: str = "none", ticket_alongside: bool = False,
            at_levels: list[int] | None = None, **extra_meta: object) -> Arm:
    """One arm of the IMP experiment (the winning tickets, or a control of them) with its levels
    not finished yet. ``ticket_alongside``: the winning-ticket arm of this seed trains in the same
    invocation, so its masks need not exist yet; ``at_levels``: a control trains only these levels
    (each depends on the winning tickets' mask of that level alone)."""
    if control not in CONTROLS:
        raise RunError(f"unknown control {control!r}; valid: {', '.join(CONTROLS)}")
    chosen = CONTROLS[control]
    total = network.protocol.levels
    if chosen is TICKET:
        return TicketArm(network, seed, chosen.arm, out, list(range(total)), extra_meta=dict(extra_meta))
    arm = ControlArm(network, seed, chosen.arm, out, at_levels or list(range(1, total)), control=chosen,
                     extra_meta=dict(extra_meta))
    if arm.todo and not ticket_alongside:
        require_ticket(arm.imp, arm.todo[0], control)
    return arm
