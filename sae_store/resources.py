"""Files that ship with the package: the example pipeline configs and the sbatch template.

In a checkout they are the repository's top-level ``configs/`` and ``jobs/`` folders; an installed
package (wheel, ``pip install .``) carries the same files as ``sae_store/_data/configs`` and
``sae_store/_data/jobs`` (pyproject.toml maps one onto the other).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from sae_store.errors import ConfigError

ResourceKind = Literal["configs", "jobs"]

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(kind: ResourceKind) -> Path:
    """The folder holding the packaged ``configs`` or ``jobs`` files, installed or in a checkout."""
    installed = _PACKAGE / "_data" / kind
    return installed if installed.is_dir() else _PACKAGE.parent / kind


def example_configs() -> dict[str, Path]:
    """The example pipeline configs by name (``demo``, ``gemma3-4b``), as files."""
    return {p.stem: p for p in sorted(resource_dir("configs").glob("*.yaml"))}


def example_config(name: str) -> Path:
    """The example config called ``name``; ConfigError naming the available ones otherwise."""
    configs = example_configs()
    if name not in configs:
        raise ConfigError(f"no example config named {name!r}; the examples are {sorted(configs)}")
    return configs[name]
