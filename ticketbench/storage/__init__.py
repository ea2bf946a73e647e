"""Results on disk, in one place: the directory of an arm's levels (:class:`RunDir`) and, beside
it, that of an instability analysis (:class:`StabilityDir`), both sharing meta.json and the lock
(:class:`Directory`); the JSON schemas they are checked against; finding and grouping the runs
under a directory; the provenance each records.

Layout of ``<out>/<task>/<arm>-seed<S>-<fingerprint>/`` for a run of levels::

    meta.json                task, arm, seed, resolved config, code and library versions
    levels/level_NN.json     one record per finished level (written last: it marks the level done)
    masks/level_NN.npz       the mask level NN trained with (IMP also writes the next level's ahead)
    rewind.pt                θ_k, the weights and buffers at the rewind step (IMP arm; not evidence)
    rewind.sha256            digest of θ_k: with k = 0 a run resumes without rewind.pt (θ0 rebuilt, checked)
    rewind_optimizer.pt      the optimizer state at step k, when the task rewinds it (not evidence)
    progress/level_NN.pt     a level in progress, to resume it midway (with --checkpoint-every; removed
                             once the level's record is written; not evidence)
    wandb.json, wandb/       the W&B run id of this directory and its offline segments (with --wandb)
    .lock                    held (flock) by the process training this directory; names it

An analysis's layout is in :mod:`ticketbench.storage.analysis_dir`.
"""

from ticketbench.storage.analysis_dir import StabilityDir, point_name
from ticketbench.storage.directory import Directory, Protocol
from ticketbench.storage.discovery import RunSet, discover, load_run_set, open_run
from ticketbench.storage.run_dir import RunDir, levels_asked

__all__ = ["Directory", "Protocol", "RunDir", "RunSet", "StabilityDir", "discover", "levels_asked", "load_run_set",
           "open_run", "point_name"]
