"""Package faces that import their submodules only when a name is first used (PEP 562).

``from sae_store.store import open_store`` works as always, but ``import sae_store.train.config``
no longer imports torch, zarr and xarray through the package's ``__init__``: the command line builds
its parsers from the config modules and answers ``--help`` without loading them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` of ``package`` exporting names of its submodules.

    ``exports`` maps a submodule (relative, e.g. ``"core"``) to the names it provides.
    """
    where = {name: f"{package}.{module}" for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        # cache it on the package; this also replaces a submodule of the same name (jobs.plan)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(where)

    return __getattr__, __dir__, sorted(where)
