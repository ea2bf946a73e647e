"""``run --control ... --at-levels``: a control's level depends only on the winning tickets' mask
of that level, so the levels a task's claims read can be trained alone, to the same records and
masks as in sequence; bad levels are refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli import TINY
from test_level_checkpoint import _comparable, _run

from ticketbench.cli import main
from ticketbench.storage.run_dir import RunDir


def test_a_control_level_trained_alone_equals_it_trained_in_sequence(fake_data_dir: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "lenet300-mnist", *TINY, "--levels", "4", "--wandb", "off", "--no-progress"]
    for out in (tmp_path / "sequence", tmp_path / "alone"):
        assert _run(out, fake_data_dir, *argv, monkeypatch=monkeypatch) == 0
    assert _run(tmp_path / "sequence", fake_data_dir, *argv, "--control", "reinit,random-prune",
                monkeypatch=monkeypatch) == 0
    assert _run(tmp_path / "alone", fake_data_dir, *argv, "--control", "reinit,random-prune", "--at-levels", "3,1",
                monkeypatch=monkeypatch) == 0
    for arm in ("reinit", "random-prune"):
        (sequence,), (alone,) = (list((tmp_path / d / "lenet300-mnist").glob(f"{arm}-seed0-*")) for d in
                                 ("sequence", "alone"))
        whole, chosen = _comparable(RunDir(sequence)), _comparable(RunDir(alone))
        assert [r["level"] for r in chosen[0]] == [1, 3]
        assert chosen[0] == [r for r in whole[0] if r["level"] in (1, 3)]
        assert chosen[1] == {n: b for n, b in whole[1].items() if n in ("level_01.npz", "level_03.npz")}
        assert RunDir(alone).meta()["at_levels"] == [1, 3]
    capsys.readouterr()
    assert main(["runs", str(tmp_path / "alone")]) == 0
    assert all("2/2" in line and "complete" in line for line in capsys.readouterr().out.splitlines()
               if "reinit" in line or "random-prune" in line)


@pytest.mark.parametrize(("args", "message"), [
    (["--at-levels", "1"], "--at-levels trains levels of a control alone"),
    (["--control", "reinit", "--at-levels", "4"], "--at-levels: level 4 is outside the control's levels 1 to 3"),
    (["--control", "reinit", "--at-levels", "0"], "--at-levels: level 0 is outside the control's levels 1 to 3"),
    (["--control", "reinit", "--at-levels", "x"], "--at-levels 'x': expected comma-separated whole numbers"),
])
def test_bad_at_levels_are_refused_in_one_line(args: list[str], message: str, fake_data_dir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, fake_data_dir, "run", "lenet300-mnist", *TINY, "--levels", "4", *args,
                monkeypatch=monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not any(tmp_path.iterdir())
