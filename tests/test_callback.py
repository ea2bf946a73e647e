"""The public ``LotteryTicket`` callback on a plain LightningModule: automatic optimization, a
standard DataLoader, BatchNorm, nothing of ticketbench's own training code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ticketbench import LotteryTicket
from ticketbench.errors import ConfigError

PRUNED = ["net.0.weight", "net.3.weight"]


class Plain(L.LightningModule):
    """A small MLP with BatchNorm, trained the ordinary Lightning way."""

    def __init__(self, optimizer: str = "adam") -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))
        self.optimizer = optimizer

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=1e-2, weight_decay=1e-3)
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)


def _data(n: int = 256, seed: int = 0) -> DataLoader:
    """A fixed order, so that a fit resumed at an epoch's end sees the batches an uninterrupted one sees."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=gen)
    y = (x[:, :4].argmax(1) + (x[:, 4] > 1).long()) % 4
    return DataLoader(TensorDataset(x, y), batch_size=32)


def _fit(module: L.LightningModule, *callbacks: L.Callback, steps: int = 40, ckpt_path: object = None) -> L.Trainer:
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, val_check_interval=8,
                        num_sanity_val_steps=0, check_val_every_n_epoch=None, callbacks=list(callbacks))
    trainer.fit(module, _data(), _data(64, seed=1), ckpt_path=ckpt_path)
    return trainer


def _module(seed: int = 0, optimizer: str = "adam") -> Plain:
    torch.manual_seed(seed)
    return Plain(optimizer)


def test_rewinding_captures_parameters_and_batchnorm_buffers_at_step_k() -> None:
    ticket = LotteryTicket(PRUNED, rewind_step=16)
    _fit(_module(), ticket)
    reference = _module()
    _fit(reference, LotteryTicket(PRUNED), steps=16)  # the same run stopped at step k
    assert set(ticket.rewind_state) == set(reference.state_dict())
    for name, value in reference.state_dict().items():
        assert torch.equal(ticket.rewind_state[name], value), name  # running_mean/var and num_batches_tracked too
    assert ticket.rewind_state["net.1.num_batches_tracked"].item() == 16


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_pruned_weights_stay_exactly_zero_under_momentum_and_weight_decay(optimizer: str) -> None:
    gen = torch.Generator().manual_seed(3)
    masks = {n: torch.rand(s, generator=gen) < 0.3 for n, s in (("net.0.weight", (32, 20)), ("net.3.weight", (4, 32)))}
    module = _module(optimizer=optimizer)
    _fit(module, LotteryTicket(PRUNED, masks=masks))
    for name, mask in masks.items():
        weight = module.get_parameter(name)
        assert torch.count_nonzero(weight[~mask]) == 0
        assert torch.count_nonzero(weight[mask]) == int(mask.sum())


def test_the_early_stop_weights_are_those_at_the_best_monitored_value() -> None:
    ticket = LotteryTicket(PRUNED, monitor="val_loss")
    seen: list[tuple[int, float, dict]] = []

    class Watch(L.Callback):
        def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            seen.append((ticket.step, float(trainer.callback_metrics["val_loss"]),
                         {k: v.clone() for k, v in pl_module.state_dict().items()}))

    _fit(_module(), ticket, Watch())
    step, value, state = min(seen, key=lambda s: (s[1], s[0]))
    assert (ticket.best_step, ticket.best_value) == (step, value)
    assert all(torch.equal(ticket.best_state[k], v) for k, v in state.items())


def test_a_level_resumed_from_a_mid_level_checkpoint_equals_an_uninterrupted_one(tmp_path) -> None:  # noqa: ANN001
    class SaveAt16(L.Callback):
        """What ModelCheckpoint does in a run that is then killed: a checkpoint in the middle of the level."""

        def on_train_batch_end(self, trainer: L.Trainer, *_: object) -> None:
            if trainer.global_step == 16:
                trainer.save_checkpoint(tmp_path / "mid.ckpt")

    whole = _module()
    uninterrupted = LotteryTicket(PRUNED, rewind_step=24, monitor="val_loss")
    _fit(whole, uninterrupted, SaveAt16())
    resumed_ticket = LotteryTicket(PRUNED, rewind_step=24, monitor="val_loss")
    resumed = _module(seed=99)  # another initialisation: everything must come from the checkpoint
    _fit(resumed, resumed_ticket, ckpt_path=tmp_path / "mid.ckpt")
    assert resumed_ticket.step == uninterrupted.step == 40
    assert (resumed_ticket.best_step, resumed_ticket.best_value) == (uninterrupted.best_step, uninterrupted.best_value)
    for name, value in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
        assert torch.equal(resumed_ticket.rewind_state[name], uninterrupted.rewind_state[name]), name
        assert torch.equal(resumed_ticket.best_state[name], uninterrupted.best_state[name]), name


@pytest.mark.parametrize(("make", "message"), [
    (lambda: LotteryTicket(["net.9.weight"]), "'net.9.weight' is not a parameter of the module; parameters: net.0"),
    (lambda: LotteryTicket(["net.1.running_mean"]), "'net.1.running_mean' is a buffer, not a parameter"),
    (lambda: LotteryTicket(PRUNED, monitor="val_acc"), "monitor 'val_acc' is not logged by the module (logged: "
                                                       "val_loss)"),
    (lambda: LotteryTicket(PRUNED, rewind_step=500), "rewind_step 500 lies beyond the last step of this fit (40 = "),
    (lambda: LotteryTicket(PRUNED, masks={"net.0.weight": torch.ones(3, 3, dtype=torch.bool)}),
     "the mask of net.0.weight is torch.bool (3, 3), the parameter (32, 20)"),
])
def test_a_wrong_setting_is_one_line_naming_it(make, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError) as err:
        _fit(_module(), make())
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.fixture(scope="module")
def ddp_fits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """tests/ddp_fit.py under DDP with two CPU processes (gloo), with and without BatchNorm, and in
    one process: what the callback held on every rank."""
    out = tmp_path_factory.mktemp("ddp")
    script = Path(__file__).with_name("ddp_fit.py")
    for mode, kind in (("ddp", "bn"), ("ddp", "plain"), ("single", "plain")):
        result = subprocess.run([sys.executable, str(script), str(out), mode, kind], capture_output=True, text=True,
                                timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert result.returncode == 0, result.stderr[-3000:]
    return {p.stem: torch.load(p, weights_only=True) for p in out.glob("*.pt")}


@pytest.mark.slow
def test_under_ddp_every_rank_holds_rank_0s_masks_rewind_point_and_early_stop(ddp_fits: dict[str, dict]) -> None:
    """Each rank passed its own random masks; BatchNorm statistics are each rank's own under DDP:
    the callback makes all of it rank 0's, exactly."""
    first, second = ddp_fits["ddp-bn-rank0"], ddp_fits["ddp-bn-rank1"]
    assert first["best_step"] == second["best_step"] is not None
    for key in ("masks", "rewind", "best", "next"):
        assert first[key].keys() == second[key].keys()
        assert all(torch.equal(first[key][n], second[key][n]) for n in first[key]), key
    assert "net.1.running_mean" in first["rewind"]
    for name, mask in first["masks"].items():
        assert not bool(first["final"][name][~mask].any()) and not bool(second["final"][name][~mask].any())


@pytest.mark.slow
def test_two_ddp_ranks_train_the_same_ticket_as_one_process(ddp_fits: dict[str, dict]) -> None:
    """Two ranks with batches of 32 (examples r, r+2, ...) against one process with the same 64:
    the weights agree to float rounding (the gradient's sum is taken in another order; at most
    1e-5 here) and the next level's masks are the same (a weight at the threshold could flip)."""
    single, ddp = ddp_fits["single-plain-rank0"], ddp_fits["ddp-plain-rank0"]
    assert all(torch.allclose(single["final"][n], ddp["final"][n], atol=1e-5, rtol=0) for n in single["final"])
    for name in single["next"]:
        assert (single["next"][name] != ddp["next"][name]).float().mean() <= 1e-3


def test_a_rewind_step_beyond_an_epoch_bounded_fit_is_refused_before_any_step() -> None:
    module = _module()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    steps = 2 * len(_data())  # two epochs of the loader
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[LotteryTicket(PRUNED, rewind_step=steps + 1)])
    with pytest.raises(ConfigError, match=rf"rewind_step {steps + 1} lies beyond the last step of this fit "
                                          rf"\({steps} = start_step 0 \+ {steps} optimizer steps\)"):
        trainer.fit(module, _data())
    assert trainer.global_step == 0
    assert all(torch.equal(module.state_dict()[k], v) for k, v in before.items()), "no step may have been taken"
