#!/usr/bin/env bash
# One short GPU allocation (about ten minutes), start to finish:
#   1. unpack the previous allocation's run directories (STATE, if given);
#   2. assemble the datasets: DATA_DIR holds mnist.npz and either cifar10.npz or the hash-checked
#      pieces of it (benchmarks/gpu/pieces.py split), which are joined there;
#   3. time the training (benchmarks/gpu/timing.py) for about a third of the budget;
#   4. spend the rest on the evidence queue (benchmarks/gpu/evidence_queue.py), leaving a minute to
#   5. pack the run directories and the timing into OUT/state.tar.gz for the next allocation.
#
# usage: bash benchmarks/gpu/allocation.sh BUDGET_SECONDS DATA_DIR OUT [STATE.tar.gz] [--compile MODE]
# Run from the repository root with ticketbench installed (pip install -e .).
set -euo pipefail
budget=${1:?budget in seconds}; data=${2:?data directory}; out=${3:?output directory}; state=${4:-}
compile=off
[[ "${5:-}" == "--compile" ]] && compile=${6:?compile mode}
began=$(date +%s)
left() { echo $(( budget - ($(date +%s) - began) )); }
mkdir -p "$out/runs"
if [[ -n "$state" && -f "$state" ]]; then
  tar -xzf "$state" -C "$out"
  echo "allocation: resumed $(find "$out/runs" -name 'level_*.json' | wc -l) finished levels from $state"
fi
if [[ ! -f "$data/cifar10.npz" ]] && compgen -G "$data/cifar10.npz.manifest.json" >/dev/null; then
  python benchmarks/gpu/pieces.py join "$data" "$data"
fi
export TICKETBENCH_DATA=$data
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt" 2>/dev/null || true
python benchmarks/gpu/timing.py --budget $(( $(left) / 3 )) --json "$out/timing.json" --markdown "$out/timing.md"
python benchmarks/gpu/evidence_queue.py --budget $(( $(left) - 60 )) --out "$out/runs" --compile "$compile" \
  2>&1 | tee "$out/queue.log"
tar -czf "$out/state.tar.gz.partial" -C "$out" runs timing.json timing.md queue.log
mv "$out/state.tar.gz.partial" "$out/state.tar.gz"
echo "allocation: packed $(find "$out/runs" -name 'level_*.json' | wc -l) finished levels into $out/state.tar.gz"
