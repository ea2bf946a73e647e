"""The checks of a task that need more than its own fields: the model exists and takes the
task's dataset, every pruned layer's role has a rate (and every rate a role), the batch and the
validation hold-out fit the dataset, no setting is one the task would silently ignore (it
would still change the run directories' fingerprint), and a built-in task's name is not borrowed.
Run on the task after every override,
before anything is trained or written."""

from __future__ import annotations

from ticketbench.config import TaskConfig, load_task, task_names
from ticketbench.data.store import LAYOUTS
from ticketbench.errors import ConfigError
from ticketbench.models import MODEL_DATASETS, MODELS, build_model
from ticketbench.pruning.schedule import pruned_tensors


def check_task(task: TaskConfig, where: str) -> None:
    """Raise :class:`ConfigError` naming the key and what is valid when ``task`` cannot run
    (``where``: the task's name or file, as given)."""
    _check_name(task, where)
    if task.model not in MODELS:
        raise ConfigError(f"{where}: model={task.model!r} is not valid; choose one of {', '.join(MODELS)}")
    takes = MODEL_DATASETS[task.model.removesuffix("-dropout")]
    if takes != task.dataset:
        fitting = ", ".join(m for m in MODELS if MODEL_DATASETS[m.removesuffix("-dropout")] == task.dataset)
        raise ConfigError(f"{where}: model {task.model} takes {takes} examples, not {task.dataset}; "
                          f"models for {task.dataset}: {fitting}")
    _check_effective(task, where)
    train = LAYOUTS[task.dataset].train_size
    if task.val_size >= train:
        raise ConfigError(f"{where}: val_size={task.val_size} leaves no training examples of the {train} of "
                          f"{task.dataset}; choose a val_size below {train}")
    if task.batch_size > train - task.val_size:
        raise ConfigError(f"{where}: batch_size={task.batch_size} exceeds the {train - task.val_size} training "
                          f"examples of {task.dataset} (after val_size={task.val_size})")
    roles = pruned_tensors(build_model(task.model, 0), task.pruning)
    if not roles:
        raise ConfigError(f"{where}: pruning.exclude {list(task.pruning.exclude)} excludes every prunable "
                          f"tensor of {task.model}")
    if task.pruning.scope == "global":
        return
    needed = sorted(set(roles.values()))
    missing = [r for r in needed if r not in task.pruning.rates]
    extra = [r for r in task.pruning.rates if r not in needed]
    if missing or extra:
        problem = f"has no rate for role {missing[0]!r}" if missing else f"names role {extra[0]!r}, which no layer has"
        raise ConfigError(f"{where}: pruning.rates {problem}; {task.model} layer-wise needs exactly the roles "
                          f"{', '.join(needed)} (e.g. --set pruning.rates.{needed[0]}=0.2), or pruning.scope=global "
                          "with rates {all: RATE}")


def _check_effective(task: TaskConfig, where: str) -> None:
    """Refuse settings that the task would not use: they would pass for a protocol change."""
    image_sets = [name for name, layout in LAYOUTS.items() if layout.dtype == "uint8"]
    images = task.dataset in image_sets
    opt = task.optimizer
    ignored = [
        (not images and task.normalize != "none", "normalize=meanstd",
         f"{task.dataset} examples are float features, not images; use normalize=none"),
        (not images and task.augment != "none", f"augment={task.augment}",
         f"crops and flips apply to image datasets ({', '.join(image_sets)})"),
        (task.val_size == 0 and task.split != "random", f"split={task.split}",
         "a split chooses the validation hold-out, and val_size=0 holds none out"),
        (opt.name == "adam" and opt.momentum != 0, f"optimizer.momentum={opt.momentum}",
         "adam ignores momentum (it keeps PyTorch's default betas); momentum applies to optimizer.name=sgd"),
        (not opt.milestones and opt.gamma != 0.1, f"optimizer.gamma={opt.gamma}",
         "gamma scales the learning rate at optimizer.milestones, and there are none"),
    ]
    for unused, setting, why in ignored:
        if unused:
            raise ConfigError(f"{where}: {setting} would have no effect: {why}")


def _check_name(task: TaskConfig, where: str) -> None:
    """Runs are filed and judged by their task's name: the name of a built-in task stays with it. A
    built-in task may change its settings under its own name, and a task file may take a built-in
    name only for that task's model and dataset (a variant of its protocol)."""
    builtins = task_names()
    if task.name not in builtins or task.name == where:
        return
    builtin = load_task(task.name)
    if where in builtins or (builtin.model, builtin.dataset) != (task.model, task.dataset):
        raise ConfigError(f"{where}: name={task.name!r} is the built-in task of {builtin.model} on {builtin.dataset}, "
                          "whose runs are filed and judged under that name; give this task a name of its own")
