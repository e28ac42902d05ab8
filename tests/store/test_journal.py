"""The append journal is durable: folders are fsynced after its renames, where the file system allows."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sae_store.store import journal
from sae_store.store.journal import discard_journal, rollback, write_journal
from sae_store.store.lock import lock_dir
from sae_store.store.lock_files import JOURNAL


def _record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Path]]:
    """Every fsync of the journal module, as ("file" or "folder", path), in order."""
    done: list[tuple[str, Path]] = []
    fsync = journal._fsync

    def recording(path: Path) -> None:
        done.append(("folder" if path.is_dir() else "file", path))
        fsync(path)

    monkeypatch.setattr(journal, "_fsync", recording)
    return done


def test_the_lock_folder_is_fsynced_after_each_journal_rename(make_store, monkeypatch) -> None:
    store = make_store(10, samples_per_shard=4)
    done = _record_fsyncs(monkeypatch)
    write_journal(store.path, 10)
    assert (lock_dir(store.path) / JOURNAL).is_dir()
    assert done[-1] == ("folder", lock_dir(store.path))  # the rename into place
    saved = [path for kind, path in done if kind == "file"]
    assert {f.parent for f in saved} <= {path for kind, path in done if kind == "folder"}  # their names
    done.clear()
    discard_journal(store.path, "append")
    assert done == [("folder", lock_dir(store.path))]
    assert not (lock_dir(store.path) / JOURNAL).exists()


def test_a_rollback_fsyncs_the_files_it_restores_and_their_folders(make_store, monkeypatch) -> None:
    store = make_store(10, samples_per_shard=4)
    write_journal(store.path, 10)
    done = _record_fsyncs(monkeypatch)
    assert rollback(store.path) == 10
    restored = [path for kind, path in done if kind == "file"]
    assert restored and all(p.name.startswith(".") and p.name.endswith(".restore") for p in restored)
    assert {p.parent for p in restored} <= {path for kind, path in done if kind == "folder"}
    assert ("folder", store.path) in done and done[-1] == ("folder", lock_dir(store.path))


def test_a_file_system_that_refuses_to_fsync_folders_is_tolerated(make_store, monkeypatch) -> None:
    store = make_store(10, samples_per_shard=4)
    fsync = os.fsync
    refused = []

    def files_only(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            refused.append(fd)
            raise OSError(22, "Invalid argument")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", files_only)
    write_journal(store.path, 10)
    assert rollback(store.path) == 10
    assert refused and not (lock_dir(store.path) / JOURNAL).exists()
