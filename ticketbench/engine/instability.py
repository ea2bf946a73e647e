"""Instability analysis (linear mode connectivity): is a network, or a subnetwork, stable to SGD
noise from its rewind point θ_k on?

For each analysis point — the dense network rewound to step k, or the subnetwork of an IMP level
(or of a control of it) at the IMP run's own rewind point — two copies start from the same
masked θ_k and train to the end of the task's schedule (learning rate positioned at k, the
optimizer handled at k as the task's ``optimizer.at_rewind`` says, as IMP itself rewinds). They
differ only in their data order and augmentation draws, copy c drawing from its own stream of
the seed; with ``same_noise`` both draw copy 0's stream, the negative control whose instability
must be exactly 0. The error along the straight line between the two trained copies is measured
on the test set and on the training set (see :mod:`ticketbench.interpolation`).

Run directory ``<out>/<task>/instability-seed<S>-<fingerprint>/`` (``instability-same-noise-...``
for the negative control): meta.json, one record per point in ``points/`` (written last: it
marks the point done), and each trained copy in ``copies/`` (not evidence) with the digest of
the θ_k it started from, and the dense θ_k for k > 0, so a killed analysis resumes at the last
finished copy, from the same θ_k.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ticketbench.atomic import atomic_write, remove_partial_writes, write_json
from ticketbench.config import TaskConfig
from ticketbench.controls import TICKET
from ticketbench.data import BatchStream, load_arrays, task_split
from ticketbench.data.tensors import DeviceSplit, ReplicaData
from ticketbench.device import default_device, use_tf32
from ticketbench.engine.arms import Start
from ticketbench.engine.copy_arm import Copy, CopyArm, CopyRunner, cached
from ticketbench.engine.loop import run_arms
from ticketbench.engine.observers import Terminal
from ticketbench.engine.suite_runner import TaskNetwork, suite_arm
from ticketbench.errors import ConfigError, RunError
from ticketbench.interpolation import Batches, PathErrors, has_batchnorm, path_errors
from ticketbench.models import build_model
from ticketbench.pruning.masks import remaining_percent
from ticketbench.pruning.schedule import pruned_tensors
from ticketbench.seeding import generator
from ticketbench.storage.analysis_dir import StabilityDir, point_name
from ticketbench.storage.provenance import on_cpu, state_digest
from ticketbench.storage.run_dir import RunDir
from ticketbench.storage.schema import ANALYSIS_ARMS, STABLE_BELOW
from ticketbench.tracking import open_tracker
from ticketbench.training.arithmetic import record_fields, wants_channels_last
from ticketbench.training.level import LevelPlan, fit_level
from ticketbench.training.module import Chunks
from ticketbench.training.replicas import Replicas
from ticketbench.wandb_mode import WandbOptions

log = logging.getLogger(__name__)

ARM, SAME_NOISE_ARM = ANALYSIS_ARMS
BN_BATCHES = 20  # training batches that re-estimate BatchNorm statistics at each point of a path


@dataclass(frozen=True)
class Point:
    """One analysis point: the subnetwork of ``level`` (0: the dense network) of the arm of
    ``control`` (``none``: the winning tickets), rewound to step ``k``."""

    level: int
    control: str
    k: int

    @property
    def name(self) -> str:
        return point_name(self.k, self.level, self.control)


def plan_points(task: TaskConfig, levels: list[int], controls: list[str],
                rewind_steps: list[int] | None) -> list[Point]:
    """The points of an analysis: the dense network (level 0) at every rewind step, the
    subnetworks of the other levels for every control at the task's rewind step (where the IMP
    run that found them rewinds)."""
    steps = rewind_steps if rewind_steps is not None else [task.rewind_step]
    bad = [k for k in steps if not 0 <= k < task.max_steps]
    if bad:
        raise ConfigError(f"--rewind-steps: {bad[0]} is outside [0, max_steps = {task.max_steps})")
    if any(lvl > 0 for lvl in levels) and steps != [task.rewind_step]:
        raise ConfigError(f"subnetworks are analysed at the rewind step of the IMP run that found them "
                          f"(k = {task.rewind_step}); for another k give --set rewind_step=K (its own IMP run), "
                          "or analyse level 0 alone at several --rewind-steps")
    bad = [lvl for lvl in levels if not 0 <= lvl < task.levels]
    if bad:
        raise ConfigError(f"--at-levels: level {bad[0]} is outside [0, levels = {task.levels})")
    points = [Point(0, "none", k) for k in steps] if 0 in levels else []
    return points + [Point(lvl, c, task.rewind_step) for lvl in sorted(set(levels) - {0}) for c in controls]


def _sets(split: DeviceSplit, chunk: int = 10_000) -> dict[str, Batches]:
    """The test set and the training split (as the network sees it without augmentation), in chunks."""
    def train() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(split.y_train)
        for lo in range(0, n, chunk):
            yield split.examples(torch.arange(lo, min(lo + chunk, n)))

    return {"test": lambda: Chunks(split.x_test, split.y_test, size=chunk), "train": train}


def _bn_batches(split: DeviceSplit, task: TaskConfig, seed: int) -> list[torch.Tensor]:
    """Fixed training batches (without augmentation) for re-estimating BatchNorm statistics."""
    n = len(split.y_train)
    order = torch.randperm(n, generator=generator(seed, "bn-statistics"))[: BN_BATCHES * task.batch_size]
    return [split.examples(rows)[0] for rows in order.split(task.batch_size)]


class Analysis:
    """One seed's instability analysis of a task (see the module docstring)."""

    def __init__(self, task: TaskConfig, seed: int, out: Path, same_noise: bool = False, bn: str = "recompute",
                 points_on_path: int = 30, progress: bool = False, wandb: WandbOptions | None = None) -> None:
        self.task, self.seed, self.out, self.same_noise, self.bn = task, seed, out, same_noise, bn
        self.points_on_path, self.progress, self.wandb = points_on_path, progress, wandb
        self.run = StabilityDir.for_arm(out, task, seed, self.run_arm)
        self.imp = RunDir.for_arm(out, task, seed, TICKET.arm)

    @property
    def run_arm(self) -> str:
        return SAME_NOISE_ARM if self.same_noise else ARM

    def todo(self, points: list[Point]) -> list[Point]:
        return [p for p in points if not self.run.point_path(p.name).is_file()]

    def check(self, points: list[Point]) -> None:
        """Refuse before anything is written: subnetworks need their IMP run's masks."""
        missing = next((p for p in points if p.level > 0 and not self.imp.mask_path(p.level).is_file()), None)
        if missing is not None:
            raise RunError(f"level {missing.level} needs the winning-ticket mask {self.imp.mask_path(missing.level)}; "
                           f"train that run first: ticketbench run {self.task.name} --seed {self.seed} with the same "
                           "--out and settings")

    def analyse(self, points: list[Point], data_dir: str | None = None) -> list[dict[str, Any]]:
        """Analyse the points not finished yet; every point's record. ``wandb`` with a resolved mode
        logs the points to the run directory's W&B run."""
        todo = self.todo(points)
        self.check(todo)
        task = self.task
        arrays = load_arrays(task.dataset, data_dir) if todo else {}
        with self.run.lock():
            remove_partial_writes(self.run.path)
            model = build_model(task.model, self.seed)
            bn = self.bn if has_batchnorm(model) else "none"
            self.run.start(task, self.seed, self.run_arm, 0, pruned_tensors(model, task.pruning), bn=bn,
                           points_on_path=self.points_on_path)
            self.run.ask_points([p.name for p in points])
            todo = self.todo(points)
            if todo:
                self._analyse_all(todo, arrays, bn)
        by_name = {point_name(r["rewind_step"], r["level"], r["control"]): r for r in self.run.point_records()}
        return [by_name[p.name] for p in points]

    def _analyse_all(self, todo: list[Point], arrays: dict, bn: str) -> None:
        """The start θ_k of every point, its two copies trained through the level loop, then the
        path between them."""
        use_tf32(self.task.precision)  # the path is evaluated in float32 (no autocast), TF32 per this policy
        task = self.task
        split = task_split(arrays, task, self.seed, default_device())
        starts, origins, seconds = {}, {}, {}
        for point in todo:
            began = time.perf_counter()
            starts[point.name] = self._start(point, split)
            origins[point.name] = state_digest(on_cpu(starts[point.name].model.state_dict()))
            seconds[point.name] = time.perf_counter() - began
        network = TaskNetwork(task)
        copies = {p.name: [CopyArm(network, self.run, self.seed, p.name, p.level, c, starts[p.name], origins[p.name],
                                   self.same_noise) for c in (0, 1)] for p in todo}
        runner = CopyRunner(task, progress=self.progress, splits={self.seed: split})
        run_arms(runner, [arm for pair in copies.values() for arm in pair], lambda arms: [Terminal.for_arms(arms)])
        tracker = open_tracker(self.run, task, self.seed, self.wandb)
        failed = True
        try:
            for point in todo:
                rec = self._path(point, starts[point.name], [arm.trained() for arm in copies[point.name]], split, bn,
                                 seconds[point.name])
                write_json(self.run.point_path(point.name), rec)
                log.info(point_line(rec))
                if tracker:
                    tracker.point_done(rec, self.run.point_records())
            failed = False
        finally:
            if tracker:
                tracker.close(failed)

    def _start(self, point: Point, split: DeviceSplit) -> Start:
        """The masked θ_k both copies start from; the dense network trained to k > 0 is cached in
        ``copies/``, so that a resumed analysis starts its copies from the same θ_k."""
        task = self.task
        if point.level > 0:
            return suite_arm(task, self.seed, point.control, self.out, ticket_alongside=True).start(point.level, split)
        start = suite_arm(task, self.seed, "none", self.out).start(0, split)  # θ0, every weight kept
        if point.k == 0:
            return start
        path = self.run.start_path(point.name)
        reached = cached(path)
        if reached is None:
            reached = self._train_to_k(point, start, split)
            atomic_write(path, lambda f: torch.save(reached, f))
        start.model.load_state_dict(reached["state"])
        optimizer_state = reached["optimizer_state"] if task.optimizer.at_rewind == "rewind" else None
        return Start(start.model, start.masks, point.k, optimizer_state)

    def _train_to_k(self, point: Point, start: Start, split: DeviceSplit) -> dict[str, Any]:
        """θ_k and the optimizer state at k of the dense network, trained from θ0 on the seed's own
        data order as level 0 of IMP is (without the validations and tests of a level)."""
        task = self.task
        to_k = dataclasses.replace(task, max_steps=point.k, rewind_step=point.k, eval_every=point.k)
        stream = BatchStream(len(split.y_train), task.batch_size, self.seed, augment=split.augments)
        label = f"[{point.name}] to k" if self.progress else None
        fitted = fit_level(LevelPlan(to_k, Replicas([start.model.to(split.device)]), [start.masks],
                                     ReplicaData([split]), [stream], capture_rewind=True, progress=label))
        reached = fitted.callback.points[0]
        if reached.rewind_state is None:
            raise RunError(f"{point.name}: the dense network diverged before step k = {point.k}; "
                           "there is no θ_k to analyse (a lower learning rate, or another k)")
        return {"state": on_cpu(reached.rewind_state), "optimizer_state": on_cpu(reached.rewind_optimizer_state)}

    def _path(self, point: Point, start: Start, copies: list[Copy], split: DeviceSplit, bn: str,
              to_k: float) -> dict[str, Any]:
        """The record of ``point``: the error along the path between its two trained copies."""
        began = time.perf_counter()
        a, b = copies
        model = copy.deepcopy(start.model).to(split.device)
        masks = _to(start.masks, split.device)
        errors = path_errors(model, _to(a.state, split.device), _to(b.state, split.device), _sets(split),
                             self.points_on_path, masks, bn,
                             _bn_batches(split, self.task, self.seed) if bn == "recompute" else None)
        return path_record(self.task, self.seed, self.run_arm, point, start, errors, (a, b), bn,
                           to_k + time.perf_counter() - began)


def _to(state: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {n: v.to(device) for n, v in state.items()}


def path_record(task: TaskConfig, seed: int, arm: str, point: Point, start: Start, errors: PathErrors,
                copies: tuple[Copy, Copy], bn: str, seconds: float) -> dict[str, Any]:
    """The record of one analysed point (errors and accuracies as fractions in [0, 1]); ``seconds``:
    reaching θ_k and evaluating the path, to which the copies' training times are added."""
    return {
        "task": task.name, "seed": seed, "arm": arm, "level": point.level, "control": point.control,
        "rewind_step": point.k, "weights_remaining_percent": remaining_percent(start.masks), "bn": bn,
        "alphas": errors.alphas, "test_error": errors.errors["test"], "train_error": errors.errors["train"],
        "instability_test": errors.instability("test"), "instability_train": errors.instability("train"),
        "copy_test_acc_final": [c.test_acc_final for c in copies], "copy_steps": [c.steps for c in copies],
        "copy_diverged": [c.diverged for c in copies],
        "seconds": round(seconds + sum(c.seconds for c in copies), 2),
        **record_fields(task.precision, task.compile, default_device(), wants_channels_last(start.model)),
    }


def point_line(rec: dict[str, Any]) -> str:
    """One line per analysed point for the terminal."""
    verdict = "stable" if rec["instability_test"] < STABLE_BELOW else "unstable"
    if any(rec["copy_diverged"]):
        verdict = "a copy diverged: not a measurement"
    ends = f"{100 * (1 - rec['test_error'][0]):.2f}% / {100 * (1 - rec['test_error'][-1]):.2f}%"
    return (f"[seed {rec['seed']}] k {rec['rewind_step']}  level {rec['level']:2d} {rec['control']:12s} "
            f"P_m {rec['weights_remaining_percent']:6.2f}%  instability test {100 * rec['instability_test']:+.2f} pp "
            f"train {100 * rec['instability_train']:+.2f} pp ({verdict})  endpoints test acc {ends}  "
            f"{rec['seconds']:.0f} s")
