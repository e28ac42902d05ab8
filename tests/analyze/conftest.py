"""Fixtures of the analysis tests: a synthetic store with planted gender features, built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from sae_store.analyze.data import Inputs, open_inputs

from .synthetic import Built, build_store


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Store (2 layers, en + ar, 18 male / 18 female / 2 unknown / 2 ambiguous), SAEs and images.

    Tests may add analysis results to it (each analysis replaces its own group), nothing else.
    """
    return build_store(tmp_path_factory.mktemp("analyze"))


@pytest.fixture(scope="module")
def inputs(built: Built) -> Inputs:
    return open_inputs(built.store.path)


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"
