"""The GPU evidence queue: training commands in priority order, run until a time budget is spent.

Every command resumes where an earlier allocation stopped (finished levels are on disk; a level cut
off by the budget resumes from its last checkpoint, written every CHECKPOINT_MINUTES), so the same
queue over the same run directory continues the evidence from one short allocation to the next.

    python benchmarks/gpu/evidence_queue.py --budget 420 --out runs/ [--compile default]

At the budget the running command gets SIGTERM (ticketbench stops with exit 143, its finished
levels kept) and the queue ends; a command that finished moves the queue to the next one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

# (what, ticketbench arguments) in the order of the evidence list in results/README.md
QUEUE: list[tuple[str, list[str]]] = [
    ("LeNet-300-100: seeds 0-4 x (tickets, reinit, random-prune), 17 levels, one process",
     ["run", "lenet300-mnist", "--seed", "0", "--replicas", "5", "--control", "none,reinit,random-prune",
      "--levels", "17"]),
    ("Conv-6: seeds 0-1 x (tickets, reinit), 8 levels",
     ["run", "conv6-cifar10", "--seed", "0", "--replicas", "2", "--control", "none,reinit", "--levels", "8"]),
    ("ResNet-20, k = 500: seeds 0-1 x (tickets, random-prune)",
     ["run", "resnet20-cifar10", "--seed", "0", "--replicas", "2", "--control", "none,random-prune"]),
    ("ResNet-20, k = 0: seeds 0-1 x (tickets, random-prune)",
     ["run", "resnet20-cifar10-rewind0", "--seed", "0", "--replicas", "2", "--control", "none,random-prune"]),
    ("ResNet-20 instability, dense, k = 0, 500, 2000, seed 0",
     ["instability", "resnet20-cifar10", "--seed", "0", "--rewind-steps", "0,500,2000"]),
]
GRACE_S = 60  # after SIGTERM: time for the command to stop cleanly before it is killed
CHECKPOINT_MINUTES = "2"  # a level in progress is saved this often (training commands)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, required=True, help="seconds for the whole queue")
    parser.add_argument("--out", type=Path, required=True, help="root of the run directories (kept between "
                                                                "allocations)")
    parser.add_argument("--compile", default="off", help="passed to every command (default off)")
    args = parser.parse_args()
    deadline = time.monotonic() + args.budget
    for what, command in QUEUE:
        left = deadline - time.monotonic()
        if left < 30:
            print(f"queue: budget spent before: {what}", flush=True)
            return 0
        argv = [sys.executable, "-m", "ticketbench", *command, "--out", str(args.out), "--wandb", "off",
                "--no-progress", "--compile", args.compile]
        if command[0] == "run":
            argv += ["--checkpoint-every", CHECKPOINT_MINUTES]
        print(f"queue: {what}\n  {' '.join(argv[1:])}", flush=True)
        began = time.monotonic()
        process = subprocess.Popen(argv)
        try:
            code = process.wait(timeout=left)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
            print(f"queue: stopped at the budget after {time.monotonic() - began:.0f} s; "
                  "the finished levels are kept, the same queue resumes them", flush=True)
            return 0
        print(f"queue: exit {code} after {time.monotonic() - began:.0f} s", flush=True)
    print("queue: every command done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
