"""Helpers for the data tests: tiny images and captions CSVs written on the fly."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import pytest

from sae_store.data.demo import make_demo_data

from .helpers import WriteCsv, write_png


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    """A folder with valid images a.png ... f.png."""
    folder = tmp_path / "images"
    for name in "abcdef":
        write_png(folder / f"{name}.png")
    return folder


@pytest.fixture
def write_csv(tmp_path: Path) -> WriteCsv:
    """Write rows (a header first) to a CSV in tmp_path and return its path."""

    def write(rows: Sequence[Sequence[str]], name: str = "captions.csv") -> Path:
        path = tmp_path / name
        with open(path, "w", encoding="utf-8", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows(rows)
        return path

    return write


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default demo data set, written once per session (read-only for tests)."""
    return make_demo_data(tmp_path_factory.mktemp("demo"))
