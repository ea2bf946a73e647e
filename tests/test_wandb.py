"""W&B logging: real wandb in offline mode, read back from the files it wrote."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import TINY, ticketbench, ticketbench_process
from wandb_records import read_offline_run

from ticketbench.config import load_task
from ticketbench.errors import RunError
from ticketbench.overrides import override
from ticketbench.references import load_references
from ticketbench.storage.run_dir import RunDir
from ticketbench.wandb_mode import resolve_mode


@pytest.fixture
def no_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment without any W&B API key (an empty netrc, no WANDB_API_KEY)."""
    netrc = tmp_path / "netrc"
    netrc.write_text("")
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return {"NETRC": str(netrc)}


def test_default_mode_is_offline_without_a_key_and_online_with_one(no_account: dict, monkeypatch) -> None:
    assert resolve_mode(None) == "offline"
    Path(no_account["NETRC"]).write_text("machine api.wandb.ai\n  login user\n  password 0123456789abcdef\n")
    assert resolve_mode(None) == "online"
    Path(no_account["NETRC"]).write_text("")
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef")
    assert resolve_mode(None) == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode(None) == "off"
    assert resolve_mode("offline") == "offline"


def test_online_without_a_key_is_refused_in_one_line(no_account: dict) -> None:
    with pytest.raises(RunError, match="needs a W&B API key"):
        resolve_mode("online")


def _segments(run: Path) -> list[Path]:
    return sorted((run / "wandb").glob("offline-run-*"))


def _table(segment: Path, summary: dict, key: str) -> dict:
    return json.loads((segment / "files" / summary[f"{key}/path"]).read_text())


def _md5_b64(path: Path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()


def test_offline_run_logs_curves_levels_tables_figures_and_artifacts(tmp_path: Path, fake_data_dir: Path) -> None:
    """As real processes: W&B completes its offline files when the command's process exits."""
    result = ticketbench_process("run", "lenet300-mnist", *TINY, "--levels", "3", "--out", str(tmp_path),
                         "--wandb", "offline", "--wandb-tag", "smoke", data=fake_data_dir)
    assert result.returncode == 0, result.stderr
    task = override(load_task("lenet300-mnist"), val_size=100, batch_size=20, max_steps=40, eval_every=10)
    run = RunDir.for_arm(tmp_path, task, 0, "imp")
    (segment,) = _segments(run.path)
    assert f"wandb sync {segment}" in result.stdout
    logged = read_offline_run(segment)

    assert logged.run.display_name == run.path.name == f"imp-seed0-{task.fingerprint()}"
    assert logged.run.run_group == f"lenet300-mnist-{task.fingerprint()}" and logged.run.job_type == "imp"
    assert set(logged.run.tags) == {"lenet300-mnist", "imp", "lenet300", "mnist", "smoke"}
    assert logged.run.run_id == json.loads((run.path / "wandb.json").read_text())["id"]
    assert logged.config["seed"] == 0 and logged.config["fingerprint"] == task.fingerprint()
    assert logged.config["task"]["max_steps"] == 40 and logged.config["task"]["val_size"] == 100

    # curves: x = level * max_steps + step; train once per block, validation on its cadence
    points = {(L * 40 + s) for L in range(3) for s in (10, 20, 30, 40)}
    train = [h for h in logged.history if "train/loss" in h]
    val = [h for h in logged.history if "val/loss" in h]
    assert {h["trainer/global_step"] for h in train} == points == {h["trainer/global_step"] for h in val}
    assert all(0 <= h["train/acc"] <= 1 for h in train) and all(0 <= h["val/acc"] <= 1 for h in val)
    assert all(h["level"] == (h["trainer/global_step"] - 1) // 40 for h in train + val)

    # per-level numbers equal the records on disk
    records = run.records()
    ends = [h for h in logged.history if "level/weights_remaining_percent" in h]
    assert [h["trainer/global_step"] for h in ends] == [40, 80, 120]
    for h, rec in zip(ends, records, strict=True):
        assert h["level/weights_remaining_percent"] == pytest.approx(rec["weights_remaining_percent"])
        assert h["level/test_acc_at_early_stop"] == pytest.approx(rec["test_acc_at_early_stop"])
        assert h["level/early_stop_step"] == rec["early_stop_step"]

    # tables: the sparsity-accuracy curve (with its line plot) and the per-layer sparsity
    levels = _table(segment, logged.summary, "levels")
    assert [row[:2] for row in levels["data"]] == [[r["level"], r["weights_remaining_percent"]] for r in records]
    assert "_wandb/visualize/sparsity_accuracy" in logged.config
    layers = _table(segment, logged.summary, "layer_sparsity")
    assert len(layers["data"]) == 3 * len(records[0]["layer_remaining_percent"])
    assert [row[2] for row in layers["data"] if row[0] == 2] == list(records[2]["layer_remaining_percent"].values())

    # the experiment at the end: figures and verdicts
    for figure in ("accuracy", "early_stop"):
        assert (segment / "files" / logged.summary[f"figures/{figure}/path"]).is_file()
    verdicts = _table(segment, logged.summary, "verdicts")
    claims = [c.id for c in load_references("lenet300-mnist").claims]
    assert [row[0] for row in verdicts["data"]] == claims
    assert {k.removeprefix("verdict/") for k in logged.summary if k.startswith("verdict/")} == set(claims)

    # artifacts: one masks version per level with the bytes on disk, and θ_k
    masks = [a for a in logged.artifacts if a.type == "masks"]
    assert [sorted(set(a.aliases) - {"latest"}) for a in masks] == [["level-00"], ["level-01"], ["level-02"]]
    for level, artifact in enumerate(masks):
        (entry,) = artifact.manifest.contents
        assert entry.path == f"level_{level:02d}.npz" and entry.digest == _md5_b64(run.mask_path(level))
    (rewind,) = [a for a in logged.artifacts if a.type == "model"]
    assert {e.path: e.digest for e in rewind.manifest.contents}["rewind.pt"] == _md5_b64(run.rewind_path)
    assert logged.exit_code == 0
    dry = subprocess.run([sys.executable, "-m", "wandb", "sync", "--dry-run", str(segment)], capture_output=True,
                         text=True, timeout=120)
    assert f"{segment.name}/run-{logged.run.run_id}.wandb" in dry.stdout + dry.stderr, "wandb sync would upload it"

    # resuming continues the same W&B run in a second offline segment, after the finished levels
    more = ticketbench_process("run", "lenet300-mnist", *TINY, "--levels", "4", "--out", str(tmp_path),
                               "--wandb", "offline", data=fake_data_dir)
    assert more.returncode == 0, more.stderr
    first, second = _segments(run.path)
    resumed = read_offline_run(second)
    assert first == segment and resumed.run.run_id == logged.run.run_id
    assert min(h["trainer/global_step"] for h in resumed.history if "train/loss" in h) == 3 * 40 + 10
    listing = ticketbench("runs", str(tmp_path))
    assert "2 offline, 2 to sync" in listing.stdout and "4/4" in listing.stdout


def test_wandb_off_writes_nothing(tmp_path: Path, fake_data_dir: Path) -> None:
    result = ticketbench("run", "lenet300-mnist", *TINY, "--levels", "1", "--out", str(tmp_path), "--wandb", "off",
                         data=fake_data_dir)
    assert result.returncode == 0, result.stderr
    (run,) = (tmp_path / "lenet300-mnist").iterdir()
    assert not (run / "wandb").exists() and not (run / "wandb.json").exists()
