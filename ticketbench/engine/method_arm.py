"""Prune once per target density with a registered method, then train: ``ticketbench run TASK
--method NAME --densities 51.2,21.0,...``.

Level i (1, 2, ...) of a method's run holds the i-th density (in the order given): its mask is
the method's answer at the initialisation θ0 (or at θ_k, read from the winning-ticket run, when the
task rewinds to k > 0), and the level trains from there with the task's protocol, so its record
has the schema of an IMP level plus ``method`` and ``target_density_percent``. A method that
prunes after training (``after_training``) first trains the dense network as level 0 (which also
captures θ_k) and prunes its final weights; the kept weights are rewound. With ``--iterative``
each density starts from the previous level's mask (and, after training, its trained weights).

Sanity checks of Frankle et al. 2021 ("Missing the Mark"), for any method: ``shuffle`` keeps the
method's per-layer counts but draws the kept positions within each layer at random; ``reinit``
keeps the masks but trains them from a fresh initialisation.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ticketbench.atomic import atomic_write
from ticketbench.config import TaskConfig
from ticketbench.controls import SANITY, Control
from ticketbench.data.tensors import DeviceSplit
from ticketbench.engine.arms import Arm, Start
from ticketbench.engine.suite_runner import TaskNetwork, train_suite
from ticketbench.errors import ConfigError, RunError
from ticketbench.models import build_model
from ticketbench.pruning.masks import apply_masks, full_masks
from ticketbench.pruning.methods import Method, PruneRequest, get_method, select_masks
from ticketbench.seeding import generator
from ticketbench.storage.run_dir import RunDir
from ticketbench.wandb_mode import WandbOptions


def parse_densities(text: str) -> list[float]:
    """``"51.2,21.0"`` -> [51.2, 21.0]: percentages of weights remaining, each in (0, 100]."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--densities {text!r}: expected comma-separated percentages, e.g. 51.2,21.0,8.6") from None
    bad = [v for v in values if not 0 < v <= 100]
    if not values or bad:
        raise ConfigError(f"--densities {text!r}: each density is a % of weights remaining in (0, 100]")
    return values


def _sampler(split: DeviceSplit, gen: torch.Generator) -> tuple[Callable, Callable]:
    """``examples(n)``: n random training examples; ``per_class(k)``: k of each class (seeded)."""
    labels = split.y_train.cpu()

    def examples(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return split.examples(torch.randperm(len(labels), generator=gen)[:n])

    def per_class(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        order = torch.randperm(len(labels), generator=gen)
        rows = torch.cat([order[labels[order] == c][:k] for c in labels.unique().tolist()])
        return split.examples(rows)

    return examples, per_class


def method_task(task: TaskConfig, densities: list[float]) -> TaskConfig:
    """The task as a method's run trains it: one level per density after level 0."""
    return dataclasses.replace(task, levels=len(densities) + 1)


def _check_keeps_weights(task: TaskConfig, names: dict[str, str], scope: str, density: float) -> None:
    """Refuse a density that keeps no weight at all (global), or none of some layer (layer-wise)."""
    sizes = {n: p.numel() for n, p in build_model(task.model, 0).named_parameters() if n in names}
    pool = sizes if scope == "layerwise" else {"all prunable tensors": sum(sizes.values())}
    name, smallest = min(pool.items(), key=lambda item: item[1])
    if round(density / 100 * smallest) < 1:
        raise ConfigError(f"--densities {density:g}% keeps no weight of {name} ({smallest} weights) of "
                          f"{task.model}; at least {100 / smallest:.3g}% keeps one")


def run_method(task: TaskConfig, seed: int, name: str, densities: list[float], out: Path = Path("runs"),
               data_dir: str | None = None, progress: bool = False,
               wandb: WandbOptions | None = None, sanity: str | None = None, iterative: bool = False) -> RunDir:
    """Train every density of one method that is not finished yet; return its run directory."""
    arm = method_arm(task, seed, name, densities, out, sanity, iterative)
    return train_suite(method_task(task, densities), [arm], data_dir, progress, wandb)[0]


@dataclass
class MethodArm(Arm):
    """The run of one pruning method at ``densities`` (level i holds the i-th). ``iterative``: each
    density starts from the previous level's mask (and, for a method that prunes after training,
    its trained weights) instead of the full network; ``control``: a sanity check of the masks."""

    method: Method = field(kw_only=True)
    densities: list[float] = field(kw_only=True)
    iterative: bool = field(kw_only=True)
    control: Control | None = field(kw_only=True)
    sanity: str | None = field(kw_only=True)
    roles: dict[str, str] = field(kw_only=True)  # the pruned tensors by name, with their roles

    @property
    def finished(self) -> str:
        return f"all {len(self.densities)} densities already finished"

    def prepare(self) -> None:
        self.run.start(self.network.protocol, self.seed, self.name, self.levels[0], self.roles,
                       method=self.method.name, sanity=self.sanity, densities=self.densities, iterative=self.iterative)

    def _final_path(self, level: int) -> Path:
        return self.run.path / f"final_{level:02d}.pt"

    def start(self, level: int, data: object) -> Start:
        assert isinstance(data, DeviceSplit)
        net, seed, method = self.network, self.seed, self.method
        names = self.roles
        model = net.build(seed)
        if level and net.rewind_step:
            model.load_state_dict((self.run if method.after_training else self.imp).load_rewind())
        masks = full_masks(model, list(names))
        if level == 0:
            return Start(model, masks, 0, about={"method": method.name, "target_density_percent": 100.0})
        previous = level - 1 if self.iterative else 0
        if self.iterative and level > 1:
            masks = self.run.load_masks(level - 1, model, list(names))
        trained = None
        if method.after_training:
            trained = net.build(seed)
            trained.load_state_dict(torch.load(self._final_path(previous), weights_only=True))
        examples, per_class = _sampler(data, generator(seed, "method", level))
        request = PruneRequest(copy.deepcopy(model).to(data.device), {n: m.to(data.device) for n, m in masks.items()},
                               names, self.densities[level - 1] / 100, examples, per_class,
                               generator(seed, "method-scores", level), trained and trained.to(data.device))
        masks = {n: m.cpu() for n, m in select_masks(method, request).items()}
        if self.control is not None:
            masks = self.control.masks(masks, seed, level)
            if self.control.fresh_init:
                model = net.build(self.control.init_seed(seed))
        apply_masks(model, masks)
        return Start(model, masks, net.rewind_step,
                     about={"method": method.name, "target_density_percent": self.densities[level - 1]})

    def finish(self, level: int, start: Start) -> None:
        if self.method.after_training and (level == 0 or self.iterative):  # the weights the next mask scores
            state = {k: v.detach().cpu() for k, v in start.model.state_dict().items()}
            atomic_write(self._final_path(level), lambda f: torch.save(state, f))


def method_arm(task: TaskConfig, seed: int, name: str, densities: list[float], out: Path = Path("runs"),
               sanity: str | None = None, iterative: bool = False) -> MethodArm:
    """The run of one method at ``densities`` with its levels not finished yet (see :class:`MethodArm`;
    ``iterative`` needs decreasing densities)."""
    chosen = get_method(name)
    if sanity is not None and sanity not in SANITY:
        raise ConfigError(f"unknown sanity check {sanity!r}; valid: {', '.join(SANITY)}")
    control = SANITY.get(sanity or "")
    if iterative and any(b >= a for a, b in zip(densities, densities[1:], strict=False)):
        raise ConfigError(f"--iterative needs decreasing --densities, got {','.join(f'{d:g}' for d in densities)}")
    arm = name + ("-iterative" if iterative else "") + (control.arm if control else "")
    task = method_task(task, densities)
    network = TaskNetwork(task)
    roles = network.roles(network.build(seed))
    built = MethodArm(network, seed, arm, out, list(range(0 if chosen.after_training else 1, task.levels)),
                      method=chosen, densities=densities, iterative=iterative, control=control, sanity=sanity,
                      roles=roles)
    if task.rewind_step and not chosen.after_training and not built.imp.rewind_path.is_file():
        raise RunError(f"{task.name} rewinds to step {task.rewind_step}: the method needs θ_k from "
                       f"{built.imp.rewind_path}; run the winning tickets (no --method) first")
    _check_keeps_weights(task, roles, chosen.scope, min(densities))
    return built
