"""Stores written before every chunk carried a CRC32C keep working, and ``verify --add-checksums`` (or
``migrate``) gives them their checksums in place - crash-safe, the compressed bytes kept."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from sae_store.store import create as create_module
from sae_store.store import open_store
from sae_store.store import schema as S
from sae_store.store.checksums import arrays_without_checksums
from sae_store.store.codecs import DEFAULT_COMPRESSORS
from sae_store.store.migrate import migrate_store
from sae_store.store.verify import verify_store
from sae_store_cli.main import main
from tests.extract.helpers import assert_same_arrays

from .test_migrate import _run_migration
from .test_usage_status import fill_block

SWAP_POINTS = ["migrate.built", "migrate.moved_aside", "migrate.swapped", "migrate.array_done"]


def _without(compressors=None):  # what create_array used before checksums
    return DEFAULT_COMPRESSORS if compressors is None else compressors


@pytest.fixture
def old(make_store) -> Path:
    """A schema 3 store written before checksums, every block of layer 0 and 1 filled."""
    with mock.patch.object(create_module, "with_checksum", _without):
        store = make_store(10, samples_per_shard=4, layers=[0, 1])
    rng = np.random.default_rng(0)
    for layer in (0, 1):
        for lang in store.layout.languages:
            for block in store.blocks:
                fill_block(store, layer, lang, block, rng)
    return store.path


def test_an_old_store_is_read_and_verified_and_gets_its_checksums(old: Path, tmp_path: Path, capsys) -> None:
    missing = arrays_without_checksums(old)
    assert S.ACTIVATIONS in missing and len(missing) == len(S.ROOT_ARRAYS)
    assert not open_store(old).activation_codec.checksum
    before = tmp_path / "before.zarr"
    shutil.copytree(old, before)
    shard = old / S.ACTIVATIONS / "c" / "0" / "0" / "0" / "0" / "0"
    stored = shard.read_bytes()
    assert main(["verify", str(old)]) == 0
    out = capsys.readouterr().out
    assert f"{len(missing)} arrays were written before chunks carried checksums" in out
    assert f"`sae-store verify {old} --add-checksums` adds them" in out
    assert main(["verify", str(old), "--add-checksums"]) == 0
    added = (
        f"added CRC32C checksums to every chunk of {len(missing)} arrays of {str(old)!r} (activations, "
        "caption, complete, extract_error, extract_status, gender ...): `sae-store verify` now detects any "
        "changed byte"
    )
    assert capsys.readouterr().out.rstrip().endswith(added)
    assert arrays_without_checksums(old) == [] and open_store(old).activation_codec.checksum
    assert_same_arrays(old, before)  # every value as it was
    assert verify_store(open_store(old)).ok and not (old / ".sae-store-locks").exists()
    # byte for byte: each inner chunk keeps its compressed bytes, followed by 4 bytes of CRC32C
    index = np.frombuffer(shard.read_bytes()[-(4 * 16 + 4) : -4], "<u8").reshape(4, 2)
    old_index = np.frombuffer(stored[-(4 * 16 + 4) : -4], "<u8").reshape(4, 2)
    np.testing.assert_array_equal(index[:, 1], old_index[:, 1] + 4)
    first = shard.read_bytes()[: int(index[0, 1])]
    assert first[:-4] == stored[: int(old_index[0, 1])]
    assert "nothing to do" in migrate_store(old)[0]


def test_damage_in_an_old_store_is_refused_not_sealed(old: Path, capsys) -> None:
    shard = old / S.ACTIVATIONS / "c" / "0" / "1" / "0" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:-30])  # cut short: its index is gone
    assert main(["verify", str(old), "--add-checksums"]) == 1
    out = capsys.readouterr().out
    assert "ERROR: activations/c/0/1/0/0/0 (layer 0 ar samples 0:4): cannot be decoded" in out
    assert out.rstrip().endswith(
        "checksums not added: repair the damage first (--repair), then run --add-checksums again"
    )
    assert S.ACTIVATIONS in arrays_without_checksums(old)


@pytest.mark.parametrize("point", SWAP_POINTS)
def test_adding_checksums_killed_at_each_step_is_finished_by_a_rerun(
    old: Path, tmp_path: Path, point
) -> None:
    whole = tmp_path / "whole.zarr"
    shutil.copytree(old, whole)
    migrate_store(whole)
    assert _run_migration(old, point) == -signal.SIGKILL
    migrate_store(old)
    assert arrays_without_checksums(old) == []
    assert_same_arrays(old, whole)
    for f in sorted((whole / S.ACTIVATIONS / "c").rglob("*")):
        if f.is_file():
            assert (old / f.relative_to(whole)).read_bytes() == f.read_bytes()
    assert not (old / ".sae-store-locks").exists()
