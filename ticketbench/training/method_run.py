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
from pathlib import Path

import torch

from ticketbench.atomic import atomic_write
from ticketbench.config import ConfigError, TaskConfig
from ticketbench.controls import SANITY, TICKET
from ticketbench.data.tensors import DeviceSplit
from ticketbench.models import build_model
from ticketbench.pruning.masks import apply_masks, full_masks
from ticketbench.pruning.methods import PruneRequest, get_method, select_masks
from ticketbench.pruning.schedule import pruned_tensors
from ticketbench.runs import RunDir, RunError
from ticketbench.seeding import generator
from ticketbench.training.imp import Arm, Start, run_arms
from ticketbench.training.level import LevelResult
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
               data_dir: str | None = None, progress: bool = False, echo: Callable[[str], None] = print,
               wandb: WandbOptions | None = None, sanity: str | None = None, iterative: bool = False) -> RunDir:
    """Train every density of one method that is not finished yet; return its run directory."""
    arm = method_arm(task, seed, name, densities, out, sanity, iterative)
    return run_arms(method_task(task, densities), [arm], data_dir, progress, echo, wandb)[0]


def method_arm(task: TaskConfig, seed: int, name: str, densities: list[float], out: Path = Path("runs"),
               sanity: str | None = None, iterative: bool = False) -> Arm:
    """The run of one method at ``densities`` with its levels not finished yet.

    ``iterative``: each density starts from the previous level's mask instead of the full network
    (densities must decrease); a method that prunes after training then scores the previous
    level's trained weights, as IMP does with magnitudes."""
    chosen = get_method(name)
    if sanity is not None and sanity not in SANITY:
        raise ConfigError(f"unknown sanity check {sanity!r}; valid: {', '.join(SANITY)}")
    control = SANITY.get(sanity or "")
    if iterative and any(b >= a for a, b in zip(densities, densities[1:], strict=False)):
        raise ConfigError(f"--iterative needs decreasing --densities, got {','.join(f'{d:g}' for d in densities)}")
    arm = name + ("-iterative" if iterative else "") + (control.arm if control else "")
    first = 0 if chosen.after_training else 1
    task = method_task(task, densities)
    run = RunDir.for_arm(out, task, seed, arm)
    imp = RunDir.for_arm(out, task, seed, TICKET.arm)
    if task.rewind_step and not chosen.after_training and not imp.rewind_path.is_file():
        raise RunError(f"{task.name} rewinds to step {task.rewind_step}: the method needs θ_k from "
                       f"{imp.rewind_path}; run the winning tickets (no --method) first")
    names = pruned_tensors(build_model(task.model, seed), task.pruning)
    _check_keeps_weights(task, names, chosen.scope, min(densities))

    def rewind_point() -> torch.nn.Module:
        model = build_model(task.model, seed)
        if task.rewind_step:
            model.load_state_dict((run if chosen.after_training else imp).load_rewind())
        return model

    def final_path(level: int) -> Path:
        return run.path / f"final_{level:02d}.pt"

    def begin(level: int, split: DeviceSplit) -> Start:
        model = rewind_point() if level else build_model(task.model, seed)
        masks = full_masks(model, list(names))
        if level == 0:
            return Start(model, masks, 0, about={"method": name, "target_density_percent": 100.0})
        previous = level - 1 if iterative else 0
        if iterative and level > 1:
            masks = run.load_masks(level - 1, model, list(names))
        trained = None
        if chosen.after_training:
            trained = build_model(task.model, seed)
            trained.load_state_dict(torch.load(final_path(previous), weights_only=True))
        examples, per_class = _sampler(split, generator(seed, "method", level))
        request = PruneRequest(copy.deepcopy(model).to(split.device), {n: m.to(split.device) for n, m in masks.items()},
                               names, densities[level - 1] / 100, examples, per_class,
                               generator(seed, "method-scores", level), trained and trained.to(split.device))
        masks = {n: m.cpu() for n, m in select_masks(chosen, request).items()}
        if control is not None:
            masks = control.masks(masks, seed, level)
            if control.fresh_init:
                model = build_model(task.model, control.init_seed(seed))
        apply_masks(model, masks)
        return Start(model, masks, task.rewind_step,
                     about={"method": name, "target_density_percent": densities[level - 1]})

    def after(level: int, start: Start, _: LevelResult) -> None:
        if chosen.after_training and (level == 0 or iterative):  # the trained weights the next mask scores
            state = {k: v.detach().cpu() for k, v in start.model.state_dict().items()}
            atomic_write(final_path(level), lambda f: torch.save(state, f))

    return Arm(seed, arm, run, list(range(first, task.levels)), begin, after,
               f"all {len(densities)} densities already finished",
               lambda: run.start(task, seed, arm, first, names, method=name, sanity=sanity, densities=densities,
                                 iterative=iterative))
