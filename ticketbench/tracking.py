"""W&B logging of one arm of an experiment, through Lightning's ``WandbLogger``.

Structure: one W&B run per run directory (task x arm x seed x configuration), named like the
directory (``imp-seed0-ec14127d``), in the group ``<task>-<fingerprint>`` (every seed and arm of
one configuration) with the arm as job type. The W&B run id is kept in ``<run dir>/wandb.json``,
so resuming a run continues the same W&B run (online it resumes; offline each invocation writes
one segment and ``wandb sync`` joins the segments in order). Replicas trained together
(``--replicas``) each log to their own W&B run, several open in one process.

The x-axis of every chart is ``trainer/global_step = level * max_steps + step``: level L occupies
[L * max_steps, (L + 1) * max_steps) and its step within the level is the remainder. Logged:

- ``train/loss``, ``train/acc`` once per block of steps (every ``eval_every`` steps; no per-step
  host sync), ``val/loss``, ``val/acc`` on the validation cadence, ``level``;
- at the end of each level: ``level/<field>`` for the record's numbers, the ``levels`` table (one row
  per finished level) with the ``sparsity_accuracy`` line plot, the ``layer_sparsity`` table, and
  the level's mask as a version of the ``masks-<task>-<run>`` artifact (alias ``level-NN``);
- after level 0 of the winning-ticket arm: θ_k as the ``rewind-<task>-<run>`` artifact;
- for an instability analysis (its own run directory and W&B run, job type its arm: ``instability`` or
  ``instability-same-noise``), after
  each analysed point: its error along the path (``path/<point>`` table and line plot),
  ``instability/test`` and ``instability/train``, and the ``points`` table of every point so far;
- when every level is finished: the report figures of the experiment (all arms and seeds of the
  configuration found beside this run) as images, with ``figures/compare`` when pruning methods
  are among them, and its ``verdicts`` table.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger

from ticketbench.atomic import write_json
from ticketbench.config import TaskConfig, plain
from ticketbench.errors import RunError
from ticketbench.storage.analysis_dir import point_name
from ticketbench.storage.directory import Directory, Protocol
from ticketbench.storage.provenance import code_version
from ticketbench.wandb_mode import WandbOptions
from ticketbench.wandb_segments import unsynced

log = logging.getLogger(__name__)

POINT_COLUMNS = ("rewind_step", "level", "control", "weights_remaining_percent", "instability_test",
                 "instability_train")
LEVEL_COLUMNS = ("level", "weights_remaining_percent", "early_stop_step", "test_acc_at_early_stop",
                 "test_acc_final", "val_acc_at_early_stop", "train_acc_final", "seconds", "diverged")


def x_axis(task: Protocol, level: int, step: int) -> int:
    """The chart position of absolute step ``step`` of ``level``."""
    return level * task.max_steps + step


def _run_id(run: Directory) -> str:
    """The W&B run id of this run directory, created once and kept in wandb.json."""
    path = run.path / "wandb.json"
    if path.is_file():
        try:
            ident = json.loads(path.read_bytes())["id"]
        except (ValueError, KeyError, TypeError):
            ident = None
        if not isinstance(ident, str) or not ident.isalnum():
            raise RunError(f"{path}: not a W&B run id record ({{\"id\": \"<letters and digits>\"}}); restore it, or "
                           "delete it and this directory logs to a new W&B run")
        return ident
    ident = secrets.token_hex(4)
    write_json(path, {"id": ident})
    return ident


def _kind(task: Protocol, meta: dict[str, Any]) -> list[str]:
    """What is trained, as tags: a suite task's model and dataset, or a user module's class."""
    return [task.model, task.dataset] if isinstance(task, TaskConfig) else [meta.get("module") or "module"]


class Tracker:
    """The W&B side of one ``ticketbench run`` invocation for one arm."""

    def __init__(self, run: Directory, task: Protocol, seed: int, options: WandbOptions) -> None:
        import wandb
        from lightning.pytorch.loggers import WandbLogger

        self.run, self.task, self.seed = run, task, seed
        meta = run.meta()
        arm = meta["arm"]
        self.stem = f"{task.name}-{run.path.name}"
        arm_keys = {k: meta[k] for k in ("control", "method", "sanity", "densities") if meta.get(k) is not None}
        config = {"task": plain(task), "seed": seed, "arm": arm, **arm_keys,
                  "fingerprint": task.fingerprint(), "run_dir": str(run.path), "code": code_version()}
        try:
            experiment = wandb.init(
                name=run.path.name, dir=str(run.path), id=_run_id(run), resume="allow", mode=options.mode,
                project=options.project, entity=options.entity,
                group=options.group or f"{task.name}-{task.fingerprint()}", job_type=arm,
                tags=[task.name, arm, *_kind(task, meta), *options.tags], config=config,
                settings=wandb.Settings(silent=True), reinit="create_new",
            )
        except Exception as err:  # noqa: BLE001 - W&B's errors (no network, refused key) in one line
            reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise RunError(f"W&B could not start the {options.mode} run of {run.path} ({type(err).__name__}: "
                           f"{reason}); check the network and the key, or use --wandb offline and `wandb sync` "
                           "later") from None
        experiment.define_metric("trainer/global_step")
        experiment.define_metric("*", step_metric="trainer/global_step", step_sync=True)
        self.logger = WandbLogger(experiment=experiment)

    def level_done(self, record: dict[str, Any], records: list[dict[str, Any]], mask: Path) -> None:
        """Summary numbers, tables, the sparsity-accuracy plot and the mask of a finished level."""
        import wandb

        level = record["level"]
        x = x_axis(self.task, level, self.task.max_steps)
        numbers = {f"level/{k}": float(record[k]) for k in LEVEL_COLUMNS if record[k] is not None}
        levels = wandb.Table(columns=list(LEVEL_COLUMNS), data=[[r[k] for k in LEVEL_COLUMNS] for r in records])
        accuracy = "test_acc_at_early_stop" if record["early_stop_step"] is not None else "test_acc_final"
        layers = wandb.Table(columns=["level", "layer", "weights_remaining_percent"],
                             data=[[r["level"], name, pct] for r in records
                                   for name, pct in r["layer_remaining_percent"].items()])
        self.logger.log_metrics({
            **numbers, "levels": levels, "layer_sparsity": layers,
            "sparsity_accuracy": wandb.plot.line(levels, "weights_remaining_percent", accuracy,
                                                 title=f"{accuracy} vs % weights remaining"),
        }, step=x)
        about = {"level": level, "weights_remaining_percent": record["weights_remaining_percent"]}
        artifact = wandb.Artifact(f"masks-{self.stem}", type="masks", metadata=about)
        artifact.add_file(str(mask), name=mask.name)
        self.logger.experiment.log_artifact(artifact, aliases=[f"level-{level:02d}"])

    def point_done(self, record: dict[str, Any], records: list[dict[str, Any]]) -> None:
        """One analysed point of an instability analysis (step = points analysed so far)."""
        import wandb

        name = point_name(record["rewind_step"], record["level"], record["control"])
        path = wandb.Table(columns=["alpha", "test_error", "train_error"],
                           data=[list(row) for row in zip(record["alphas"], record["test_error"],
                                                          record["train_error"], strict=True)])
        table = wandb.Table(columns=list(POINT_COLUMNS), data=[[r[k] for k in POINT_COLUMNS] for r in records])
        self.logger.log_metrics({
            f"path/{name}": path, "points": table,
            f"path_plot/{name}": wandb.plot.line(path, "alpha", "test_error", title=f"test error on the path, {name}"),
            "instability/test": record["instability_test"], "instability/train": record["instability_train"],
        }, step=len(records))

    def rewind_point(self, files: list[Path]) -> None:
        """θ_k (and the optimizer state at k when the task rewinds it) as a versioned artifact."""
        import wandb

        artifact = wandb.Artifact(f"rewind-{self.stem}", type="model",
                                  metadata={"rewind_step": self.task.rewind_step, "seed": self.seed})
        for path in files:
            artifact.add_file(str(path), name=path.name)
        self.logger.experiment.log_artifact(artifact, aliases=[f"step-{self.task.rewind_step}"])

    def experiment_done(self, figures: list[Path], claim_rows: list[dict[str, str]],
                        verdicts: dict[str, str]) -> None:
        """The report figures (PNG files), the verdict table and each claim's verdict of the
        experiment, when every level is finished (see :mod:`ticketbench.summary`)."""
        import wandb

        logged: dict[str, Any] = {f"figures/{p.stem}": wandb.Image(str(p)) for p in figures}
        if claim_rows:
            logged["verdicts"] = wandb.Table(columns=list(claim_rows[0]), data=[list(r.values()) for r in claim_rows])
        self.logger.log_metrics(logged, step=x_axis(self.task, self.task.levels, 0))
        self.logger.experiment.summary.update({f"verdict/{claim}": verdict for claim, verdict in verdicts.items()})

    def close(self, failed: bool) -> None:
        """Close the W&B run and say how to upload its offline segments still to sync."""
        self.logger.experiment.finish(exit_code=1 if failed else 0)
        segments = unsynced(self.run)
        if segments:
            log.info(f"W&B offline run, to upload: wandb sync {' '.join(map(str, segments))}")


def open_tracker(run: Directory, task: Protocol, seed: int, options: WandbOptions | None) -> Tracker | None:
    """The run's :class:`Tracker` when W&B logging is on (``options`` with a mode other than off)."""
    return Tracker(run, task, seed, options) if options is not None and options.mode != "off" else None


class ReplicaLogger(Logger):
    """Routes the metrics of K replicas trained together to their own loggers: a metric logged as
    ``name@k`` goes to logger k as ``name``; one without a suffix (the step, the level) to all."""

    def __init__(self, loggers: list[Logger]) -> None:
        super().__init__()
        self.loggers = loggers

    @property
    def name(self) -> str:
        return "replicas"

    @property
    def version(self) -> str:
        return ""

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Each replica's configuration is logged when its W&B run starts."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        shared = {key: value for key, value in metrics.items() if "@" not in key}
        routed: list[dict[str, float]] = [dict(shared) for _ in self.loggers]
        for key, value in metrics.items():
            if "@" in key:
                name, _, k = key.rpartition("@")
                routed[int(k)][name] = value
        for logger, values in zip(self.loggers, routed, strict=True):
            logger.log_metrics(values, step)
