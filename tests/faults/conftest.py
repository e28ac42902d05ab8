"""Fixtures of the fault-injection tests: the extraction tests' tiny model, images and stores."""

from __future__ import annotations

from tests.extract.conftest import (  # noqa: F401  (fixtures are found by name)
    _one_thread,
    images_root,
    loaded,
    make_store,
    reference,
    templates,
)
