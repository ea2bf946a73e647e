"""Reading the YAML files a user gives or the package ships (tasks, references), with one-line errors."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ticketbench.errors import ConfigError


def packaged_names(package: str) -> list[str]:
    """Stems of the YAML files shipped in ``package``."""
    files = resources.files(package).iterdir()
    return sorted(p.name[: -len(".yaml")] for p in files if p.name.endswith(".yaml"))


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of a file a user gave, or a one-line :class:`ConfigError` naming it."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what} {path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path}: is a directory; expected a YAML file") from None
    except OSError as err:
        raise ConfigError(f"{what} {path}: cannot be read ({err.strerror})") from None


def parse_yaml(text: str, where: str) -> Any:
    """YAML text as Python objects, or a one-line :class:`ConfigError` with the line and column."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML{at} ({problem})") from None


def read_yaml_source(package: str, name_or_path: str, what: str) -> tuple[str, str]:
    """Text and display name of a YAML file given by path, or shipped in ``package`` under that name."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return read_text(path, what), str(path)
    names = packaged_names(package)
    if name_or_path not in names:
        raise ConfigError(f"unknown {what} {name_or_path!r}; valid {what}s: {', '.join(names)}")
    return resources.files(package).joinpath(f"{name_or_path}.yaml").read_text(), f"{what} {name_or_path}"
