"""``sae-store du`` projects the file count of a store exactly, checked against real extractions."""

from __future__ import annotations

from pathlib import Path

from sae_store.extract.config import ExtractConfig
from sae_store.extract.run import extract_activations
from sae_store.models.loader import LoadedModel
from sae_store.store import open_store, store_usage

from .conftest import MakeStore


def _files(path: Path) -> int:
    return sum(1 for p in path.rglob("*") if p.is_file())


def test_projected_files_equal_the_files_of_the_finished_store(
    make_store: MakeStore, loaded: LoadedModel, reference: Path
) -> None:
    final = _files(reference)
    assert store_usage(open_store(reference)).projected_files == final
    store = make_store()
    assert store_usage(store).projected_files == final  # empty: projected from the chunk grids
    first = store.blocks[0]
    extract_activations(
        store, loaded, ExtractConfig(batch_size=2, progress=False, sample_range=(first.start, first.stop))
    )
    partly = store_usage(open_store(store.path))
    assert 0 < partly.fraction_complete < 1 and partly.files < final
    assert partly.projected_files == final
