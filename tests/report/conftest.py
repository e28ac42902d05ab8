"""Fixtures of the report tests: synthetic stores (one bare, one with results) and their reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from sae_store.report import ReportResult, build_report, load_inputs
from sae_store.store import ActivationStore

from .synthetic import make_store, write_results


@pytest.fixture(scope="session")
def bare_store(tmp_path_factory: pytest.TempPathFactory) -> ActivationStore:
    """A store with the activations of 2 of its 3 layers written and nothing else (read-only)."""
    return make_store(tmp_path_factory.mktemp("bare") / "store.zarr", written_layers=2)


@pytest.fixture(scope="session")
def bare_report(bare_store: ActivationStore, tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    """The report of :func:`bare_store` (read-only)."""
    return build_report(load_inputs(bare_store.path), tmp_path_factory.mktemp("bare-report"))


@pytest.fixture(scope="session")
def full_store(tmp_path_factory: pytest.TempPathFactory) -> ActivationStore:
    """A complete store with every analysis and intervention result, ``results/``, ``saes/`` and
    ``images/`` beside it (read-only)."""
    root = tmp_path_factory.mktemp("full")
    store = make_store(root / "store.zarr")
    write_results(store, root / "results", saes_dir=root / "saes")
    return store


@pytest.fixture(scope="session")
def full_report(full_store: ActivationStore, tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    """The report of :func:`full_store` (read-only)."""
    return build_report(load_inputs(full_store.path), tmp_path_factory.mktemp("full-report"))


def results_dir(store: ActivationStore) -> Path:
    return store.path.parent / "results"
