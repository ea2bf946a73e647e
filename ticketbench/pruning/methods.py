"""The plugin API for pruning methods.

A method is a function ``method(request: PruneRequest) -> scores or masks``. It receives the model
at its initialisation (or rewind) point with the current masks applied, the current masks, a way
to draw training examples, a seeded generator and the target density, and returns either

- **scores**: one float tensor per prunable tensor, same shape, higher = more worth keeping; the
  suite keeps exactly the target count, ranked globally (``scope="global"``) or within each layer
  (``scope="layerwise"``, each layer to the target density), weights already pruned stay pruned,
  ties go to the lower position; or
- **masks**: one bool tensor per prunable tensor (True = kept), which must keep exactly the target
  count and never revive a pruned weight.

Register a method with the :func:`method` decorator, or let an installed package expose it under
the entry-point group ``ticketbench.methods`` (``name = "package.module:function"``); ticketbench
finds it without being edited. A complete method, magnitude pruning at initialisation::

    from ticketbench.pruning.methods import PruneRequest, method

    @method("my-magnitude", scope="global")
    def my_magnitude(request: PruneRequest):
        return {name: request.model.get_parameter(name).detach().abs() for name in request.masks}

The baselines in ``baselines/`` (random, magnitude at init, SNIP, GraSP, SynFlow, one-shot
magnitude after training) are written against this API and registered through the entry points
of this project, exactly as a third-party package would do it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

import torch
from torch import nn

from ticketbench.errors import ConfigError
from ticketbench.pruning.masks import Masks
from ticketbench.pruning.select import prune_global, prune_layerwise

Scores = dict[str, torch.Tensor]
ENTRY_POINT_GROUP = "ticketbench.methods"
SCOPES = ("global", "layerwise")


@dataclass
class PruneRequest:
    """Everything a method may use. ``model`` is the method's own copy: it may change it freely."""

    model: nn.Module
    masks: Masks
    roles: dict[str, str]
    density: float  # fraction of all prunable weights to keep, in (0, 1]
    examples: Callable[[int], tuple[torch.Tensor, torch.Tensor]]  # n random training examples
    per_class: Callable[[int], tuple[torch.Tensor, torch.Tensor]]  # k training examples of each class
    generator: torch.Generator
    trained: nn.Module | None = None  # the dense network after training (methods with after_training)

    @property
    def keep(self) -> int:
        """The number of prunable weights to keep overall."""
        return round(self.density * sum(m.numel() for m in self.masks.values()))

    def layer_keep(self) -> dict[str, int]:
        """The number to keep in each layer when every layer is pruned to ``density``."""
        return {n: min(round(self.density * m.numel()), int(m.sum())) for n, m in self.masks.items()}


@dataclass(frozen=True)
class Method:
    """A registered method: its function, how its scores are ranked, and whether it prunes the
    trained dense network (and then rewinds) instead of the network at initialisation."""

    name: str
    fn: Callable[[PruneRequest], Scores | Masks]
    scope: str = "global"
    after_training: bool = False


_REGISTRY: dict[str, Method] = {}
_BROKEN: dict[str, str] = {}  # entry-point name -> why it could not be loaded
_REFUSED: dict[str, tuple[str, str]] = {}  # entry point -> (its name, why it was not loaded)
_BUILT_IN: set[str] = set()  # the names this package's own distribution registers
OWN_DISTRIBUTION = "ticketbench"


def method(name: str, *, scope: str = "global", after_training: bool = False) -> Callable:
    """Decorator: register ``fn`` as pruning method ``name``."""
    if scope not in SCOPES:
        raise ValueError(f"method {name}: scope must be one of {', '.join(SCOPES)}, got {scope!r}")

    def register(fn: Callable[[PruneRequest], Scores | Masks]) -> Callable[[PruneRequest], Scores | Masks]:
        known = _REGISTRY.get(name)
        if known is not None and known.fn.__module__ != fn.__module__:
            raise ValueError(f"method {name!r} is registered already (by {known.fn.__module__}); a plug-in needs a "
                             "name of its own")
        _REGISTRY[name] = Method(name, fn, scope, after_training)
        return fn

    return register


def _load_entry_points() -> None:
    """Import the methods that installed packages declare; a plain function is registered under
    its entry-point name with the default scope. The built-in methods load first, and a plug-in
    declaring one of their names is refused (not loaded)."""
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: not _built_in(e)):
        if entry.name in _BUILT_IN and not _built_in(entry):
            _REFUSED[entry.value] = (entry.name, f"entry point {entry.value} declares the name of a built-in method; "
                                                 "rename the plug-in")
            continue
        if entry.name in _REGISTRY or entry.name in _BROKEN:
            if _built_in(entry):
                _BUILT_IN.add(entry.name)
            continue
        try:
            loaded = entry.load()
        except Exception as err:  # noqa: BLE001 - one broken plug-in must not break the others
            _BROKEN[entry.name] = f"entry point {entry.value} fails to import ({type(err).__name__}: {err})"
            continue
        if entry.name not in _REGISTRY:
            if not callable(loaded):
                _BROKEN[entry.name] = f"entry point {entry.value} is not a function"
                continue
            _REGISTRY[entry.name] = Method(entry.name, loaded)
        if _built_in(entry):
            _BUILT_IN.add(entry.name)


def _built_in(entry: EntryPoint) -> bool:
    return entry.dist is not None and entry.dist.name == OWN_DISTRIBUTION


def broken_methods() -> dict[str, str]:
    """Installed plug-ins that could not be loaded, with the reason (listed, never fatal to others)."""
    _load_entry_points()
    return dict(_BROKEN)


def refused_methods() -> list[tuple[str, str]]:
    """Plug-ins not loaded because they declare a built-in method's name: (name, why)."""
    _load_entry_points()
    return list(_REFUSED.values())


def method_names() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)


def get_method(name: str) -> Method:
    names = method_names()
    if name in _BROKEN:
        raise ConfigError(f"method {name} is installed but broken: {_BROKEN[name]}")
    if name not in _REGISTRY:
        raise ConfigError(f"unknown method {name!r}; valid methods: {', '.join(names)}")
    return _REGISTRY[name]


class MethodError(ConfigError):
    """A pruning method raised, or returned something that cannot be turned into masks."""


def _check_answer(name: str, result: object, masks: Masks) -> dict[str, torch.Tensor]:
    """The method's answer if it is one tensor of the right shape per prunable tensor, all of them
    boolean masks or all finite-or-infinite scores (never NaN) that are not all equal."""
    if not isinstance(result, dict):
        raise MethodError(f"method {name} returned {type(result).__name__}; it must return a dict of parameter "
                          "name -> tensor (scores, or bool masks)")
    if set(result) != set(masks):
        missing, extra = sorted(set(masks) - set(result)), sorted(set(result) - set(masks), key=str)
        raise MethodError(f"method {name} must return one tensor per prunable tensor; "
                          f"missing {missing}, unexpected {extra}")
    for key, mask in masks.items():
        value = result[key]
        if not isinstance(value, torch.Tensor) or value.is_complex():
            raise MethodError(f"method {name}: {key} is {type(value).__name__}, expected a real tensor")
        if value.shape != mask.shape:
            raise MethodError(f"method {name}: {key} has shape {tuple(value.shape)}, expected {tuple(mask.shape)}")
    kinds = {t.dtype == torch.bool for t in result.values()}
    if len(kinds) > 1:
        raise MethodError(f"method {name} mixed bool masks and scores; return one kind for every tensor")
    if kinds == {True}:
        return result
    for key, value in result.items():
        nan = int(torch.isnan(value.detach().float()).sum())
        if nan:
            raise MethodError(f"method {name}: {key} has {nan} NaN score(s); scores must be numbers "
                              "(+inf keeps a weight, -inf drops it)")
    kept = torch.cat([result[n].detach().float().flatten()[masks[n].flatten().to(result[n].device)]
                      for n in masks])
    if len(kept) > 1 and bool((kept == kept[0]).all()):
        raise MethodError(f"method {name} gave every kept weight the same score ({kept[0].item()}); "
                          "the ranking would be by position alone")
    return result


def select_masks(chosen: Method, request: PruneRequest) -> Masks:
    """Run the method and turn its answer into masks that meet the target exactly."""
    try:
        answer = chosen.fn(request)
    except Exception as err:  # noqa: BLE001 - a plug-in's failure is reported in one line, naming it
        raise MethodError(f"method {chosen.name} raised {type(err).__name__}: {err}") from None
    masks = request.masks
    result = _check_answer(chosen.name, answer, masks)
    if all(t.dtype == torch.bool for t in result.values()):
        new = {n: result[n].to(masks[n].device) for n in masks}
        if any(bool((new[n] & ~masks[n]).any()) for n in masks):
            raise MethodError(f"method {chosen.name} revived pruned weights")
        wanted = request.layer_keep() if chosen.scope == "layerwise" else None
        kept = {n: int(m.sum()) for n, m in new.items()}
        if (wanted is not None and kept != wanted) or (wanted is None and sum(kept.values()) != request.keep):
            raise MethodError(f"method {chosen.name} kept {sum(kept.values())} weights; the target is {request.keep}")
        return new
    scores = {n: s.detach().float().to(masks[n].device) for n, s in result.items()}
    if chosen.scope == "layerwise":
        keep = request.layer_keep()
        return prune_layerwise(scores, masks, {n: int(m.sum()) - keep[n] for n, m in masks.items()})
    kept = sum(int(m.sum()) for m in masks.values())
    if request.keep > kept:
        raise ValueError(f"density {request.density:.4f} keeps more weights than the current masks ({kept})")
    return prune_global(scores, masks, kept - request.keep)
