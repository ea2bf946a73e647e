"""The package's import graph: no cycles, and nothing imports upward.

Layers, bottom to top (a module may import its own layer and the ones below): configuration and
primitives; data, models and pruning; storage (run and analysis directories, their schemas, finding
and grouping runs) and W&B tracking (which logs what it is handed, and imports nothing of the
analysis); analysis of finished runs (scores,
reports, paths, the summary of a finished experiment); training (the Lightning module, the
callbacks and the fit of one level); the engine (the level loop, its arm kinds, runners and
observers, the instability analysis) and the public experiment on a user's module; executors;
the command line. Every import counts, also one inside a function (the command line's lazy
imports) or under ``TYPE_CHECKING``. The package root (the version, and the public classes
imported on first use) stands outside the layers.
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

import ticketbench

PACKAGE = Path(ticketbench.__file__).parent
LAYERS = [
    {"errors", "logs", "yaml_files", "typed_mapping", "config", "overrides", "seeding", "seeds", "faults",
     "interrupt", "stats", "atomic", "device"},
    {"data", "models", "pruning", "controls", "tasks", "references", "task_check", "catalog"},
    {"storage", "wandb_mode", "wandb_segments", "tracking"},
    {"scoring", "report", "compare", "path_figures", "testing", "interpolation", "summary", "listing"},
    {"training", "callback"},
    {"engine", "lottery"},
    {"sweep"},
    {"cli", "__main__"},
]
ROOT = "ticketbench"


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("ticketbench", *path.relative_to(PACKAGE).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` imports anywhere in it."""
    here = ".".join(("ticketbench", *path.relative_to(PACKAGE).with_suffix("").parts))
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    named: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            named |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            named |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {m for m in named if m in modules and m != here.removesuffix(".__init__")}


def _layer(module: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if module.split(".")[1] in names)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {ROOT} for name, path in modules.items() if name != ROOT}


def test_every_module_has_a_layer(graph: dict[str, set[str]]) -> None:
    known = set().union(*LAYERS)
    unplaced = sorted(m for m in graph if m.split(".")[1] not in known)
    assert not unplaced, f"place these modules in a layer of {__name__}.LAYERS: {unplaced}"


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps if _layer(d) > _layer(m))


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of the graph, or [] when there is none."""
    # a package imports its own submodules (re-exports); those edges point down the tree, not back
    edges = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    try:
        list(graphlib.TopologicalSorter(edges).static_order())
    except graphlib.CycleError as err:
        return list(err.args[1])
    return []


def test_nothing_imports_upward(graph: dict[str, set[str]]) -> None:
    assert not _upward(graph)


def test_the_import_graph_has_no_cycle(graph: dict[str, set[str]]) -> None:
    assert not _cycle(graph)


def test_the_checks_see_lazy_imports_upward_imports_and_cycles(graph: dict[str, set[str]]) -> None:
    assert "ticketbench.engine.instability" in graph["ticketbench.cli.instability"]  # imported inside a function
    assert "ticketbench.device" in graph["ticketbench.storage.directory"]
    assert _upward({**graph, "ticketbench.storage.run_dir": {"ticketbench.training.level"}}) == \
        ["ticketbench.storage.run_dir -> ticketbench.training.level"]
    looped = {**graph, "ticketbench.device": {"ticketbench.atomic"}, "ticketbench.atomic": {"ticketbench.device"}}
    assert set(_cycle(looped)) == {"ticketbench.device", "ticketbench.atomic"}


READ_RUNS = """
import contextlib, io, sys
from ticketbench.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    codes = [main([command, sys.argv[1]]) for command in ("runs", "score", "check")] + [main(["list"])]
heavy = {m.split(".")[0] for m in sys.modules} & {"lightning", "pytorch_lightning", "wandb"}
print(codes, sorted(heavy))
"""


def test_the_commands_that_read_runs_import_neither_lightning_nor_wandb() -> None:
    """Listing, scoring and checking runs read JSON and masks: they start in seconds because they
    import no trainer and no W&B (Lightning alone takes about 5 s to import on a loaded CPU)."""
    runs = Path(__file__).parents[1] / "results" / "mnist1d-mlp"
    done = subprocess.run([sys.executable, "-c", READ_RUNS, str(runs)], capture_output=True, text=True)
    assert done.stdout.strip() == "[0, 0, 0, 0] []", done.stdout + done.stderr
