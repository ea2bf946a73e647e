"""The pruning-method plugin API and the baselines, on cases small enough to compute by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import install, slow_params
from ticketbench_baselines.grasp import TEMPERATURE
from ticketbench_baselines.synflow import synflow_scores
from torch import nn

from ticketbench.errors import ConfigError
from ticketbench.models import build_model
from ticketbench.pruning.masks import full_masks
from ticketbench.pruning.methods import Method, PruneRequest, get_method, method_names, select_masks
from ticketbench.seeding import generator


class TwoLayer(nn.Module):
    """x -> W1 x -> ReLU -> W2 (no biases): gradients and flows have closed forms."""

    def __init__(self, w1: torch.Tensor, w2: torch.Tensor) -> None:
        super().__init__()
        self.fc1 = nn.Linear(w1.shape[1], w1.shape[0], bias=False)
        self.fc2 = nn.Linear(w2.shape[1], w2.shape[0], bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(w1)
            self.fc2.weight.copy_(w2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def request(model: nn.Module, density: float, x: torch.Tensor, y: torch.Tensor, trained: nn.Module | None = None):
    names = [n for n, p in model.named_parameters() if p.dim() > 1]
    return PruneRequest(model=model, masks=full_masks(model, names), roles=dict.fromkeys(names, "hidden"),
                        density=density, examples=lambda n: (x[:n], y[:n]), per_class=lambda k: (x, y),
                        generator=generator(0, "test"), trained=trained)


def test_snip_scores_equal_the_hand_computed_gradient_times_weight() -> None:
    w1 = torch.tensor([[1.0, -2.0], [0.5, 1.5]])
    w2 = torch.tensor([[2.0, -1.0], [-0.5, 1.0]])
    x, y = torch.tensor([[1.0, 2.0]]), torch.tensor([1])
    scores = get_method("snip").fn(request(TwoLayer(w1, w2), 0.5, x, y))
    h_pre = x @ w1.T                      # [[-3, 3.5]]: the first unit is off
    h = h_pre.clamp(min=0)
    dlogits = torch.softmax(h @ w2.T, 1) - F.one_hot(y, 2)  # dL/dlogits of cross-entropy
    g2 = dlogits.T @ h
    g1 = ((dlogits @ w2) * (h_pre > 0)).T @ x
    torch.testing.assert_close(scores["fc2.weight"], (g2 * w2).abs())
    torch.testing.assert_close(scores["fc1.weight"], (g1 * w1).abs())
    assert scores["fc1.weight"][0].eq(0).all(), "a unit that is off gets no gradient"


def test_synflow_conserves_the_flow_layer_by_layer() -> None:
    """For a bias-free ReLU network the scores of every layer sum to the same R (Tanaka et al.)."""
    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 4, bias=False), nn.ReLU(),
                        nn.Linear(4, 3, bias=False))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    names = [n for n, _ in net.named_parameters()]
    masks = full_masks(net, names)
    masks["2.weight"][0, :2] = False
    scores = synflow_scores(net, masks, (6,))
    absolute = [(p.detach().abs().double() * masks[n]) for n, p in net.named_parameters()]
    flow = torch.ones(1, 6, dtype=torch.float64)
    for w in absolute:
        flow = flow @ w.T
    for name in names:
        assert scores[name].sum().item() == pytest.approx(flow.sum().item(), rel=1e-9)
    assert scores["2.weight"][0, :2].eq(0).all()


def test_grasp_keeps_the_lowest_paper_score_where_the_sign_matters() -> None:
    gen = torch.Generator().manual_seed(3)
    w1, w2 = torch.randn(4, 3, generator=gen), torch.randn(3, 4, generator=gen)
    x, y = torch.randn(6, 3, generator=gen), torch.randint(0, 3, (6,), generator=gen)
    model = TwoLayer(w1, w2)
    scores = get_method("grasp").fn(request(model, 0.5, x, y))
    flat = torch.cat([w1.flatten(), w2.flatten()])

    def loss(theta: torch.Tensor) -> torch.Tensor:
        a, b = theta[:12].view(4, 3), theta[12:].view(3, 4)
        return F.cross_entropy(torch.relu(x @ a.T) @ b.T / TEMPERATURE, y)

    g = torch.autograd.functional.jacobian(loss, flat)
    paper = -flat * (torch.autograd.functional.hessian(loss, flat) @ g)  # S(-w) of the paper
    ours = torch.cat([scores["fc1.weight"].flatten(), scores["fc2.weight"].flatten()])
    torch.testing.assert_close(ours, -paper, rtol=1e-4, atol=1e-12)
    assert (paper > 0).any() and (paper < 0).any(), "mixed signs: the convention decides the mask"
    kept = select_masks(get_method("grasp"), request(model, 0.5, x, y))
    kept_flat = torch.cat([kept["fc1.weight"].flatten(), kept["fc2.weight"].flatten()])
    assert set(torch.argsort(paper)[:12].tolist()) == set(kept_flat.nonzero().flatten().tolist())


def _lenet_request(density: float, model: nn.Module | None = None) -> PruneRequest:
    model = model or build_model("lenet300", 0)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(100, 1, 28, 28, generator=gen), torch.arange(100) % 10
    return request(model, density, x, y, trained=build_model("lenet300", 1))


@pytest.mark.parametrize("density", slow_params([0.512, 0.21, 0.086, 0.035, 0.014], [0.512, 0.21, 0.086, 0.035]))
def test_every_baseline_meets_the_density_exactly(density: float) -> None:
    for name in method_names():
        req = _lenet_request(density)
        masks = select_masks(get_method(name), req)
        total = sum(m.numel() for m in masks.values())
        assert sum(int(m.sum()) for m in masks.values()) == round(density * total), name
        if get_method(name).scope == "layerwise":
            assert {n: int(m.sum()) for n, m in masks.items()} == req.layer_keep(), name


def test_random_pruning_keeps_exact_per_layer_counts_and_depends_on_the_seed() -> None:
    req = _lenet_request(0.3)
    first = select_masks(get_method("random"), req)
    assert {n: int(m.sum()) for n, m in first.items()} == {n: round(0.3 * m.numel()) for n, m in first.items()}
    again = select_masks(get_method("random"), _lenet_request(0.3))
    assert all(torch.equal(first[n], again[n]) for n in first), "same generator, same mask"
    other = _lenet_request(0.3)
    other.generator = generator(1, "test")
    assert not torch.equal(select_masks(get_method("random"), other)["fc1.weight"], first["fc1.weight"])


def test_masks_returned_by_a_method_are_checked() -> None:
    req = _lenet_request(0.5)

    def reviving(r: PruneRequest) -> dict[str, torch.Tensor]:
        return {n: torch.ones_like(m) for n, m in r.masks.items()}

    req.masks["fc1.weight"][0, 0] = False
    with pytest.raises(ValueError, match="revived pruned weights"):
        select_masks(Method("reviving", reviving), req)
    with pytest.raises(ValueError, match="must return one tensor per prunable tensor; missing"):
        select_masks(Method("partial", lambda r: {"fc1.weight": r.masks["fc1.weight"]}), req)


def test_unknown_method_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown method 'snap'; valid methods: grasp, magnitude-init"):
        get_method("snap")


def test_an_installed_package_is_found_through_its_entry_point(site: Path) -> None:
    """A throwaway distribution (module + dist-info with entry_points.txt) on the path, as pip leaves one."""
    install(site, "throwaway-prune", "throwaway_prune",
            "import torch\n"
            "def largest_first(request):\n"
            "    return {n: request.model.get_parameter(n).detach().abs() for n in request.masks}\n",
            "largest-first = throwaway_prune:largest_first\n")
    found = get_method("largest-first")
    assert (found.fn.__module__, found.scope, "snip" in method_names()) == ("throwaway_prune", "global", True)
