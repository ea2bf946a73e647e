"""Step and level times of the suite's training on one accelerator, against a bare PyTorch loop.

For each task (LeNet-300-100, Conv-6, ResNet-20), K stacked replicas, eager or compiled, float32
or bf16-mixed: the mean time of one optimizer step of ``Classifier.run_steps`` (the suite's inner
loop, masks enforced after every step as the callback does) over a timed block that follows a
warm-up block (compilation included there, not in the figure), and the level time it projects
(steps per level × step time; validation, early-stop copies and the test pass not included).
``bare`` is the same step written as a plain PyTorch loop (one model, its optimizer, no masks),
in the same process: the ratio suite / bare is the suite's overhead.

Fabricated images of the real shapes: timing does not depend on pixel values. Rows run in
priority order and stop when ``--budget`` seconds are spent; the rows not reached are listed.

    python benchmarks/gpu/timing.py --budget 240 --json timing.json --markdown timing.md
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ticketbench.config import TaskConfig, load_task
from ticketbench.data import BatchStream, task_split
from ticketbench.data.tensors import ReplicaData
from ticketbench.device import default_device, use_tf32
from ticketbench.models import build_model
from ticketbench.overrides import override
from ticketbench.training.arithmetic import channels_last, wants_channels_last
from ticketbench.training.module import Blocks, Classifier, build_optimizer
from ticketbench.training.replicas import Replicas

TASKS = ("lenet300-mnist", "conv6-cifar10", "resnet20-cifar10")
SHAPES = {"mnist": (28, 28), "cifar10": (32, 32, 3)}


@dataclass
class Row:
    task: str
    replicas: int
    compile: str
    precision: str
    ms_per_step: float
    level_s_per_replica: float  # projected: steps per level x step time / K
    vs_bare: float | None  # step time per replica / the bare loop's step time


def _arrays(dataset: str, n_train: int, n_test: int = 1000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    shape = SHAPES[dataset]
    return {"x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
            "y_train": np.arange(n_train) % 10, "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
            "y_test": np.arange(n_test) % 10}


def _split(task: TaskConfig, seed: int, device: torch.device):
    arrays = _arrays(task.dataset, task.val_size + 20 * task.batch_size)
    return task_split(arrays, task, seed, device)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def suite_step(task: TaskConfig, k: int, device: torch.device, steps: int) -> float:
    """Seconds per optimizer step of K replicas through ``Classifier.run_steps``."""
    splits = [_split(task, s, device) for s in range(k)]
    augment = task.augment == "crop-flip"
    streams = [BatchStream(len(s.y_train), task.batch_size, i, augment=augment) for i, s in enumerate(splits)]
    model = Replicas([build_model(task.model, s) for s in range(k)]).to(device)
    use_tf32(task.precision)
    module = Classifier(model, ReplicaData(splits), Blocks(streams, 0, 2 * steps, []), task.optimizer,
                        precision=task.precision, compile_mode=task.compile)
    opt = build_optimizer(list(model.parameters()), task.optimizer)
    params = list(model.parameters())
    factors = [torch.ones_like(p) for p in params]

    @torch.no_grad()
    def enforce(*_: object) -> None:  # the callback's mask enforcement, after every step
        torch._foreach_mul_(params, factors)

    opt.register_step_post_hook(enforce)
    block = next(iter(module.blocks)).to(device)
    module.run_steps(block[:steps], opt)  # warm-up: compilation, cuDNN autotuning, allocator
    _synchronize(device)
    began = time.perf_counter()
    module.run_steps(block[steps:], opt)
    _synchronize(device)
    return (time.perf_counter() - began) / steps


def bare_step(task: TaskConfig, device: torch.device, steps: int) -> float:
    """Seconds per step of the plain loop: one model, its optimizer, cross-entropy, no masks."""
    split = _split(task, 0, device)
    model = build_model(task.model, 0).to(device)
    if wants_channels_last(model):
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(list(model.parameters()), task.optimizer)
    stream = BatchStream(len(split.y_train), task.batch_size, 0, augment=task.augment == "crop-flip")
    rows = stream.steps(0, 2 * steps).to(device)
    layout = channels_last if wants_channels_last(model) else (lambda x: x)
    use_tf32("32-true")

    def run(block: torch.Tensor) -> None:
        for r in block:
            x, y = split.train_batch(r)
            loss = F.cross_entropy(model(layout(x)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    run(rows[:steps])
    _synchronize(device)
    began = time.perf_counter()
    run(rows[steps:])
    _synchronize(device)
    return (time.perf_counter() - began) / steps


def grid(replicas: list[int]) -> list[tuple[str, int, str, str]]:
    """(task, K, compile, precision) in the order they are measured: eager float32 first."""
    order = [("off", "32-true"), ("off", "bf16-mixed"), ("default", "32-true"), ("default", "bf16-mixed")]
    return [(t, k, c, p) for c, p in order for t in TASKS for k in replicas]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=240.0, help="seconds for all rows (default 240)")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per row (and as many warm-up steps)")
    parser.add_argument("--replicas", default="1,4,16", help="K values, comma-separated")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--markdown", type=Path, help="write a table here")
    args = parser.parse_args()
    device = default_device()
    deadline = time.monotonic() + args.budget
    bare: dict[str, float] = {}
    rows: list[Row] = []
    skipped: list[str] = []
    for name, k, mode, precision in grid([int(k) for k in args.replicas.split(",")]):
        label = f"{name} K={k} compile={mode} {precision}"
        if time.monotonic() > deadline:
            skipped.append(label)
            continue
        task = override(load_task(name), compile=mode, precision=precision)
        try:
            if name not in bare:
                bare[name] = bare_step(task, device, args.steps)
            seconds = suite_step(task, k, device, args.steps)
        except Exception as err:  # a row that cannot run here (e.g. a compiler missing) is reported, not fatal
            skipped.append(f"{label}: {type(err).__name__}: {str(err).splitlines()[0][:160]}")
            continue
        row = Row(name, k, mode, precision, round(seconds * 1e3, 3), round(seconds * task.max_steps / k, 1),
                  round(seconds / k / bare[name], 2))
        rows.append(row)
        print(f"{label}: {row.ms_per_step} ms/step, level {row.level_s_per_replica} s per replica, "
              f"{row.vs_bare}x the bare loop per replica", flush=True)
    about = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
             "torch": torch.__version__, "steps": args.steps,
             "bare_ms_per_step": {t: round(s * 1e3, 3) for t, s in bare.items()}}
    if args.json:
        args.json.write_text(json.dumps({**about, "rows": [asdict(r) for r in rows], "skipped": skipped}, indent=2))
    if args.markdown:
        lines = [f"Device: {about['device']}, torch {about['torch']}; {args.steps} timed steps per row.", "",
                 "| task | K | compile | precision | ms / step | level s / replica | × bare / replica |",
                 "|---|---|---|---|---|---|---|"]
        lines += [f"| {r.task} | {r.replicas} | {r.compile} | {r.precision} | {r.ms_per_step} | "
                  f"{r.level_s_per_replica} | {r.vs_bare} |" for r in rows]
        lines += ["", *(f"- not measured: {s}" for s in skipped)]
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
