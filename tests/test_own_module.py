"""The optimizer at the rewind point on a user's own module: captured at step k (optimizers and
learning-rate schedulers), restored before the next fit's first step, and equal to training on.

Every step below sees the same full batch, so a fit rewound to step k with the state captured
there must take exactly the steps the uninterrupted fit took after k."""

from __future__ import annotations

import re

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ticketbench import LotteryExperiment, LotteryTicket
from ticketbench.storage.run_dir import RunDir

PRUNED = ["net.0.weight", "net.2.weight"]
K = 5  # the rewind step
AFTER = 3  # steps trained after it


class Small(L.LightningModule):
    def __init__(self, optimizer: str) -> None:
        super().__init__()
        self.optimizer = optimizer
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self) -> dict:
        chosen = {"sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
                  "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
                  "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1)}[self.optimizer]
        optimizer = chosen(self.parameters())
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)  # per step: lr moves at k
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def _batch() -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 8, generator=gen)
    return DataLoader(TensorDataset(x, x[:, :4].argmax(1)), batch_size=16)


def _fit(module: L.LightningModule, ticket: LotteryTicket, steps: int) -> L.Trainer:
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[ticket])
    trainer.fit(module, _batch())
    return trainer


def _module(optimizer: str) -> Small:
    torch.manual_seed(0)
    return Small(optimizer)


def _level_one(optimizer: str, level0: LotteryTicket, rewound: bool) -> Small:
    module = _module(optimizer)
    module.load_state_dict(level0.rewind_state)
    states = {"optimizer_state": level0.rewind_optimizer_state, "scheduler_state": level0.rewind_scheduler_state}
    _fit(module, LotteryTicket(PRUNED, start_step=K, **(states if rewound else {})), AFTER)
    return module


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_a_level_rewound_with_its_optimizer_continues_exactly_as_training_on(optimizer: str) -> None:
    whole = _module(optimizer)
    level0 = LotteryTicket(PRUNED, rewind_step=K, rewind_optimizer=True)
    trainer = _fit(whole, level0, K + AFTER)
    assert level0.rewind_scheduler_state[0]["last_epoch"] == K, "the schedule as step k + 1 sees it"
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == K + AFTER
    if optimizer != "sgd":
        assert all(int(s["step"]) == K for s in level0.rewind_optimizer_state[0]["state"].values())

    rewound = _level_one(optimizer, level0, rewound=True)
    fresh = _level_one(optimizer, level0, rewound=False)
    for name, value in whole.state_dict().items():
        assert torch.equal(rewound.state_dict()[name], value), name
    assert not all(torch.equal(fresh.state_dict()[n], v) for n, v in whole.state_dict().items()), \
        "a fresh optimizer must train other weights (else this test could not fail)"


def test_the_first_rewound_sgd_step_is_the_momentum_update_written_out() -> None:
    level0 = LotteryTicket(PRUNED, rewind_step=K, rewind_optimizer=True)
    _fit(_module("sgd"), level0, K)
    theta = _module("sgd")
    theta.load_state_dict(level0.rewind_state)
    x, y = next(iter(_batch()))
    F.cross_entropy(theta.net(x), y).backward()
    group = level0.rewind_optimizer_state[0]["param_groups"][0]
    lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
    assert lr == pytest.approx(0.1 * 0.5 ** (K // 2)), "the learning rate of step k + 1 under StepLR"
    buffers = level0.rewind_optimizer_state[0]["state"]
    expected = {}
    for index, (name, param) in enumerate(theta.named_parameters()):
        step = param.grad + decay * param.detach()
        expected[name] = param.detach() - lr * (momentum * buffers[index]["momentum_buffer"] + step)

    one = _module("sgd")
    one.load_state_dict(level0.rewind_state)
    _fit(one, LotteryTicket(PRUNED, start_step=K, optimizer_state=level0.rewind_optimizer_state,
                            scheduler_state=level0.rewind_scheduler_state), 1)
    for name, param in one.named_parameters():
        torch.testing.assert_close(param.detach(), expected[name], rtol=1e-6, atol=1e-7)


def test_an_optimizer_state_for_another_fit_is_refused_in_one_line() -> None:
    level0 = LotteryTicket(PRUNED, rewind_step=K, rewind_optimizer=True)
    _fit(_module("adam"), level0, K)
    with pytest.raises(ValueError, match="optimizer_state holds 2 state"):
        _fit(_module("adam"), LotteryTicket(PRUNED, optimizer_state=level0.rewind_optimizer_state * 2), 1)


class Data(L.LightningDataModule):
    def train_dataloader(self) -> DataLoader:
        return _batch()

    def test_dataloader(self) -> DataLoader:
        return _batch()


class Logged(Small):
    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        self.log("test_acc", (self.net(batch[0]).argmax(1) == batch[1]).float().mean())


def test_an_experiment_rewinds_the_optimizer_of_every_level_when_asked(tmp_path) -> None:  # noqa: ANN001
    def experiment(policy: str) -> LotteryExperiment:
        return LotteryExperiment("own", prune=PRUNED, levels=2, max_steps=K + AFTER, rewind_step=K, monitor=None,
                                 optimizer_at_rewind=policy,
                                 trainer={"accelerator": "cpu", "devices": 1, "limit_val_batches": 0})

    assert experiment("fresh").fingerprint() != experiment("rewind").fingerprint()
    runs = {policy: experiment(policy).run(lambda: Logged("adam"), Data(), out=tmp_path)[0]
            for policy in ("fresh", "rewind")}
    assert not runs["fresh"].rewind_optimizer_path.is_file()
    stored = runs["rewind"].load_rewind_optimizer()
    level0 = LotteryTicket(PRUNED, rewind_step=K, rewind_optimizer=True)
    L.seed_everything(0, verbose=False)
    _fit(Logged("adam"), level0, K + AFTER)  # what the experiment's level 0 is, by hand
    assert stored["schedulers"] == level0.rewind_scheduler_state
    captured = level0.rewind_optimizer_state[0]["state"]
    for mine, theirs in zip(stored["optimizers"][0]["state"].values(), captured.values(), strict=True):
        assert all(torch.equal(mine[key], theirs[key]) for key in theirs)
    finals = {policy: run.records()[1]["test_acc_final"] for policy, run in runs.items()}
    masks = {policy: run.load_masks(1) for policy, run in runs.items()}
    assert all(torch.equal(masks["fresh"][n], masks["rewind"][n]) for n in PRUNED), "level 0 is the same fit"
    assert runs["rewind"].records()[1]["steps"] == AFTER and finals["rewind"] is not None


def test_the_public_pruning_step_removes_exact_counts_of_the_smallest_weights() -> None:
    from ticketbench import magnitude_masks
    from ticketbench.config import PruningConfig
    from ticketbench.pruning.schedule import next_masks

    module = _module("adam")
    layer = magnitude_masks(module, PRUNED, rate=0.2)
    for name in PRUNED:
        weight = module.get_parameter(name).detach().abs()
        assert int((~layer[name]).sum()) == round(0.2 * weight.numel())
        assert weight[~layer[name]].max() <= weight[layer[name]].min(), "the smallest magnitudes go first"
    again = magnitude_masks(module, layer, rates={"net.0.weight": 0.5, "net.2.weight": 0.1})
    for name, rate in (("net.0.weight", 0.5), ("net.2.weight", 0.1)):
        kept = int(layer[name].sum())
        assert int(again[name].sum()) == kept - round(rate * kept)
        assert not bool((again[name] & ~layer[name]).any()), "a pruned weight stays pruned"
    whole = magnitude_masks({n: module.get_parameter(n) for n in PRUNED}, layer, rate=0.3, scope="global")
    kept = sum(int(m.sum()) for m in layer.values())
    assert sum(int(m.sum()) for m in whole.values()) == kept - round(0.3 * kept)
    roles = {n: n for n in PRUNED}
    suite = next_masks(module, layer, roles, PruningConfig("layerwise", {"net.0.weight": 0.5, "net.2.weight": 0.1}))
    assert all(torch.equal(suite[n], again[n]) for n in PRUNED), "the suite's own round is this call"


def test_the_public_pruning_step_breaks_ties_by_position() -> None:
    from ticketbench import magnitude_masks

    weights = {"w": torch.tensor([1.0, -1.0, 1.0, 2.0, 1.0])}
    assert magnitude_masks(weights, ["w"], rate=0.4)["w"].tolist() == [False, False, True, True, True]


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda m: m(_module("adam"), "net.0.weight", rate=0.2), TypeError, "masks must be masks by name or a list"),
    (lambda m: m(_module("adam"), ["net.9.weight"], rate=0.2), ValueError, "'net.9.weight' is not a parameter"),
    (lambda m: m(_module("adam"), PRUNED), ValueError, "give exactly one of rate and rates"),
    (lambda m: m(_module("adam"), PRUNED, rate=1.0), ValueError, "the rate of net.0.weight must be in [0, 1), got 1.0"),
    (lambda m: m(_module("adam"), PRUNED, rate="0.2"), ValueError, "must be a number in [0, 1), got '0.2'"),
    (lambda m: m(_module("adam"), PRUNED, rates={"net.0.weight": 0.2}), ValueError, "rates has no rate for"),
    (lambda m: m(_module("adam"), PRUNED, rates={"net.0.weight": 0.1, "net.2.weight": 0.1}, scope="global"),
     ValueError, "global pruning takes one rate"),
    (lambda m: m(_module("adam"), {"net.0.weight": torch.ones(2)}, rate=0.2), ValueError,
     "the mask of net.0.weight must be a bool tensor of shape (16, 8)"),
    (lambda m: m(_module("adam"), PRUNED, rate=0.2, scope="per-layer"), ValueError, "scope must be one of"),
])
def test_the_public_pruning_step_names_a_wrong_argument(call, error: type, message: str) -> None:  # noqa: ANN001
    from ticketbench import magnitude_masks

    with pytest.raises(error) as raised:
        call(magnitude_masks)
    assert message in str(raised.value) and str(raised.value).startswith("magnitude_masks: ")


def _experiment(**changed: object) -> LotteryExperiment:
    settings = {"name": "own", "prune": PRUNED, "levels": 2, "max_steps": 8, "rewind_step": 0, "monitor": None,
                "trainer": {"accelerator": "cpu", "devices": 1, "limit_val_batches": 0}} | changed
    return LotteryExperiment(**settings)


@pytest.mark.parametrize(("changed", "error", "message"), [
    ({"levels": "3"}, TypeError, "levels must be a whole number, got '3'"),
    ({"levels": None}, TypeError, "levels must be a whole number, got None"),
    ({"levels": 2.5}, TypeError, "levels must be a whole number, got 2.5"),
    ({"levels": 0}, ValueError, "levels must be >= 1, got 0"),
    ({"rate": "0.2"}, TypeError, "rate must be a number, got '0.2'"),
    ({"prune": "net.0.weight"}, TypeError, "prune must be a list of names, got 'net.0.weight'"),
    ({"prune": [0]}, TypeError, "prune must hold names (strings), got 0"),
    ({"rewind_step": -3}, ValueError, "rewind_step must be >= 0, got -3"),
    ({"monitor": 5}, TypeError, "monitor must be a string or None, got 5"),
    ({"trainer": ["cpu"]}, TypeError, "trainer must be a dict of Trainer arguments"),
    ({"optimizer_at_rewind": "keep"}, ValueError, "optimizer_at_rewind must be fresh or rewind, got 'keep'"),
])
def test_a_wrong_experiment_setting_names_it(changed: dict, error: type, message: str) -> None:
    with pytest.raises(error) as raised:
        _experiment(**changed)
    assert str(raised.value) == f"LotteryExperiment: {message}" or message in str(raised.value)


@pytest.mark.parametrize(("arguments", "error", "message"), [
    ({"make_module": Logged("adam")}, TypeError, "make_module must be a function that builds a fresh module"),
    ({"make_module": lambda: nn.Linear(2, 2)}, TypeError, "make_module returned a Linear, not a LightningModule"),
    ({"datamodule": None}, TypeError, "datamodule must be a LightningDataModule, got NoneType"),
    ({"seed": -1}, ValueError, "seed must be in [0, 4294967295], got -1"),
    ({"seed": "0"}, TypeError, "seed must be a whole number, got '0'"),
    ({"controls": "reinit"}, TypeError, "controls must be a list of names, got 'reinit'"),
    ({"controls": []}, ValueError, "controls names no arm; valid: none, reinit, random-prune"),
    ({"controls": ["none", "shuffle"]}, ValueError, "unknown control 'shuffle'"),
])
def test_wrong_run_arguments_are_refused_before_anything_is_written(arguments: dict, error: type, message: str,
                                                                      tmp_path) -> None:  # noqa: ANN001
    given = {"make_module": lambda: Logged("adam"), "datamodule": Data(), "out": tmp_path / "runs"} | arguments
    with pytest.raises(error, match=re.escape(message)):
        _experiment().run(given.pop("make_module"), given.pop("datamodule"), **given)
    assert not (tmp_path / "runs").exists()


def test_an_output_root_that_is_a_file_is_refused(tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "file").write_text("mine")
    with pytest.raises(ValueError, match="out .* is a file; give a directory"):
        _experiment().run(lambda: Logged("adam"), Data(), out=tmp_path / "file")
    assert (tmp_path / "file").read_text() == "mine"


@pytest.mark.parametrize(("arguments", "error", "message"), [
    ({"prune": None}, TypeError, "prune must be a list of names, got None"),
    ({"prune": 5}, TypeError, "prune must be a list of names, got 5"),
    ({"prune": "net.0.weight"}, TypeError, "prune must be a list of names, got 'net.0.weight'"),
    ({"masks": [1, 2]}, TypeError, "masks must be bool tensors by parameter name, got list"),
    ({"masks": {"net.0.weight": torch.ones(16, 8)}}, TypeError, "the mask of net.0.weight must be a bool tensor"),
    ({"start_step": -3}, ValueError, "start_step must be >= 0, got -3"),
    ({"rewind_step": "5"}, TypeError, "rewind_step must be a whole number, got '5'"),
    ({"monitor": 5}, TypeError, "monitor must be a string or None, got 5"),
    ({"optimizer_state": {"state": {}}}, TypeError, "optimizer_state must be a list of state dicts"),
])
def test_a_wrong_callback_argument_names_it(arguments: dict, error: type, message: str) -> None:
    given = {"prune": PRUNED} | arguments
    with pytest.raises(error, match=re.escape(f"LotteryTicket: {message}")):
        LotteryTicket(given.pop("prune"), **given)


def test_two_tickets_in_one_trainer_keep_their_own_state(tmp_path) -> None:  # noqa: ANN001
    first = {"net.0.weight": torch.rand(16, 8, generator=torch.Generator().manual_seed(1)) > 0.5}
    second = {"net.2.weight": torch.rand(4, 16, generator=torch.Generator().manual_seed(2)) > 0.5}
    tickets = [LotteryTicket(["net.0.weight"], masks=first, rewind_step=2),
               LotteryTicket(["net.2.weight"], masks=second, rewind_step=3)]
    module = _module("sgd")
    trainer = L.Trainer(max_steps=4, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=tickets)
    trainer.fit(module, _batch())
    assert tickets[0].state_key != tickets[1].state_key
    for name, mask in {**first, **second}.items():
        assert not module.get_parameter(name)[~mask].any(), f"{name}: its own ticket's mask holds"
    trainer.save_checkpoint(tmp_path / "two.ckpt")
    resumed = [LotteryTicket(["net.0.weight"]), LotteryTicket(["net.2.weight"])]
    L.Trainer(max_steps=5, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, callbacks=resumed).fit(
        _module("sgd"), _batch(), ckpt_path=tmp_path / "two.ckpt")
    assert torch.equal(resumed[0].masks["net.0.weight"], first["net.0.weight"])
    assert torch.equal(resumed[1].masks["net.2.weight"], second["net.2.weight"])
    assert resumed[0].rewind_state is not None and resumed[1].step == 5


def test_a_parameter_pruned_by_two_tickets_is_refused() -> None:
    tickets = [LotteryTicket(["net.0.weight"]), LotteryTicket(["net.0.weight", "net.2.weight"])]
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, callbacks=tickets)
    with pytest.raises(ValueError, match="net.0.weight is pruned by two LotteryTicket callbacks"):
        trainer.fit(_module("sgd"), _batch())


class EpochOrder(torch.utils.data.Sampler):
    """Each epoch's order drawn from (seed, epoch): Lightning calls ``set_epoch``, so a fit resumed
    at an epoch's end draws the orders an uninterrupted one draws."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):  # noqa: ANN204
        return iter(torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch))
                    .tolist())


def _shuffled() -> DataLoader:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(16, 8, generator=gen)
    dataset = TensorDataset(x, x[:, :4].argmax(1))
    return DataLoader(dataset, batch_size=4, sampler=EpochOrder(len(dataset)))


def _epochs(module: L.LightningModule, tmp_path, callbacks: list, ckpt_path=None) -> L.Trainer:  # noqa: ANN001
    saving = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, every_n_epochs=1)
    trainer = L.Trainer(max_epochs=4, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[saving, *callbacks])
    trainer.fit(module, _shuffled(), ckpt_path=ckpt_path)
    return trainer


@pytest.mark.filterwarnings("ignore:The dirpath has changed")
@pytest.mark.parametrize("with_ticket", [False, True])
def test_a_fit_resumed_from_an_epoch_end_checkpoint_ends_as_an_uninterrupted_one(with_ticket: bool,
                                                                                 tmp_path) -> None:  # noqa: ANN001
    """First plain Lightning (it resumes exactly here), then the same fit with the callback:
    weights, masks, step, θ_k captured after the checkpoint and the optimizer and scheduler
    states at k all equal the uninterrupted fit's."""
    masks = {"net.0.weight": torch.rand(16, 8, generator=torch.Generator().manual_seed(4)) > 0.3}

    def ticket() -> list:
        return [LotteryTicket(["net.0.weight"], masks=masks, rewind_step=10, rewind_optimizer=True)] \
            if with_ticket else []

    whole, whole_callbacks = _module("sgd"), ticket()
    _epochs(whole, tmp_path / "whole", whole_callbacks)
    torch.manual_seed(99)  # another initialisation: everything must come from the checkpoint
    resumed, resumed_callbacks = Small("sgd"), ticket()
    _epochs(resumed, tmp_path / "resumed", resumed_callbacks, ckpt_path=tmp_path / "whole" / "epoch=1-step=8.ckpt")
    for name, value in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
    if with_ticket:
        (a,), (b,) = whole_callbacks, resumed_callbacks
        assert a.step == b.step == 16 and torch.equal(a.masks["net.0.weight"], b.masks["net.0.weight"])
        assert all(torch.equal(a.rewind_state[k], b.rewind_state[k]) for k in a.rewind_state)
        assert a.rewind_scheduler_state == b.rewind_scheduler_state
        for mine, theirs in zip(a.rewind_optimizer_state[0]["state"].values(),
                                b.rewind_optimizer_state[0]["state"].values(), strict=True):
            assert torch.equal(mine["momentum_buffer"], theirs["momentum_buffer"])


@pytest.mark.slow
def test_the_cnn_example_rewinds_late_with_its_optimizer(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """examples/cnn_bn_tickets.py: BatchNorm, SGD momentum and a step schedule, k = 30 of 300."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "examples" / "cnn_bn_tickets.py"
    monkeypatch.syspath_prepend(str(path.parent))  # as when the script runs: its folder on the path
    spec = importlib.util.spec_from_file_location("cnn_bn_tickets", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.main(str(tmp_path))
    runs = {run.name.split("-seed")[0]: run for run in (tmp_path / "mnist1d-cnn-bn").iterdir()}
    imp, reinit = (RunDir(runs[arm]) for arm in ("imp", "reinit"))
    assert [r["level"] for r in imp.records()] == [0, 1, 2, 3, 4]
    assert [r["level"] for r in reinit.records()] == [1, 2, 3, 4]
    assert all(r["start_step"] == 30 and r["steps"] == 270 for r in imp.records()[1:])
    state = imp.load_rewind_optimizer()
    assert state["schedulers"][0]["last_epoch"] == 30 and "momentum_buffer" in state["optimizers"][0]["state"][0]
    assert imp.load_rewind()["features.1.num_batches_tracked"] == 30, "θ_k holds BatchNorm's statistics at k"


def test_an_experiment_trains_a_compiled_module(tmp_path) -> None:  # noqa: ANN001
    (run,) = _experiment().run(lambda: torch.compile(Logged("adam"), backend="eager"), Data(), out=tmp_path)
    records = run.records()
    assert [r["level"] for r in records] == [0, 1] and all(r["compile"] == "by-user" for r in records)
    masks = run.load_masks(1)
    assert all(int((~masks[n]).sum()) == round(0.2 * masks[n].numel()) for n in PRUNED)
