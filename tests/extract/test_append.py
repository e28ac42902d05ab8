"""``append``: growing the sample dimension safely, then extracting only the new samples."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from sae_store.errors import DataError, StoreLockedError
from sae_store.extract.append import append_samples
from sae_store.extract.config import ExtractConfig
from sae_store.extract.init import init_store
from sae_store.extract.run import extract_activations
from sae_store.models.loader import LoadedModel
from sae_store.store import StoreConfig, open_store
from sae_store.store import append as append_mod
from sae_store.store import schema as S
from sae_store.store.append import unlock_store
from sae_store.store.lock import (
    LOCK_DIR,
    LockInfo,
    append_lock,
    append_lock_path,
    claim_path,
    register_extraction,
)

from .conftest import MakeStore, one_thread, samples
from .helpers import N_SAMPLES, SAMPLES_PER_SHARD, assert_same_arrays, store_files

CFG = ExtractConfig(batch_size=2, progress=False)
NEW = range(N_SAMPLES, N_SAMPLES + 4)


def test_append_then_extract_equals_a_store_made_with_all_samples(
    make_store: MakeStore, loaded: LoadedModel, tiny_model_dir: Path, images_root: Path, tmp_path: Path
) -> None:
    store = make_store()
    extract_activations(store, loaded, CFG)
    before = store.dataset().load()  # a reader that opened the store before the append
    reader = store.dataset()

    result = append_samples(store.path, samples(images_root, NEW))
    assert (result.n_before, result.n_after, result.added) == (10, 14, ["s10", "s11", "s12", "s13"])
    assert [(b.start, b.stop) for b in result.blocks_to_extract] == [(8, 12), (12, 14)]
    grown = open_store(store.path)
    assert grown.layout.n_samples == 14
    flags = grown.read_flags()
    assert flags[..., :10].all() and not flags[..., 10:].any()  # old flags of the tail block stay

    # the reader opened before still reads the old, consistent data
    assert reader.sizes[S.SAMPLE] == 10
    np.testing.assert_array_equal(reader[S.ACTIVATIONS].values, before[S.ACTIVATIONS].values)
    assert list(grown.dataset()[S.SAMPLE].values[:10]) == list(before[S.SAMPLE].values)

    summary = extract_activations(grown, loaded, CFG)
    assert (summary.blocks_written, summary.blocks_skipped) == (4, 4)  # the tail block is redone whole
    whole = init_store(
        tmp_path / "whole.zarr",
        samples(images_root, range(14)),
        tiny_model_dir,
        config=StoreConfig(samples_per_shard=SAMPLES_PER_SHARD),
    )
    with one_thread():
        extract_activations(whole, loaded, CFG)
    assert_same_arrays(grown.path, whole.path)
    ds = grown.dataset()
    assert list(ds[S.GENDER].values[10:]) == ["female", "male", "female", "male"]
    assert ds[S.CAPTION].sel(language="ar").values[12] == "شخص رقم 12."


def test_duplicate_ids_are_refused_and_listed_without_touching_the_store(
    make_store: MakeStore, images_root: Path
) -> None:
    store = make_store()
    files = store_files(store.path)
    table = samples(images_root, range(8, 12))
    with pytest.raises(
        DataError, match=r"2 sample id\(s\) are already in store .*: \['s08', 's09'\]; append only new"
    ):
        append_samples(store.path, table)
    table = samples(images_root, NEW).assign(image=lambda t: t["image"].str.replace(".png", ".jpg"))
    with pytest.raises(
        DataError, match=r"4 image\(s\) of the new samples in .* cannot be used \(im10.jpg: missing file; "
    ):
        append_samples(store.path, table)
    assert store_files(store.path) == files
    assert not (store.path / LOCK_DIR).exists()


def test_undecodable_new_images_are_refused_like_prepare_does(
    make_store: MakeStore, images_root: Path, tmp_path: Path
) -> None:
    store = make_store()
    files = store_files(store.path)
    folder = tmp_path / "new-images"
    shutil.copytree(images_root, folder)
    (folder / "im11.png").write_bytes(b"")  # zero bytes: exists, but is no image
    (folder / "im12.png").write_bytes((images_root / "im12.png").read_bytes()[:60])  # truncated
    with pytest.raises(
        DataError,
        match=r"2 image\(s\) of the new samples in .* cannot be used \(im11.png: corrupt image; im12.png: "
        r"corrupt image\); fix the table",
    ):
        append_samples(store.path, samples(images_root, NEW), images_dir=folder)
    assert store_files(store.path) == files
    assert not (store.path / LOCK_DIR).exists()


def _raises(error: BaseException) -> Callable[..., None]:
    """A stand-in for a step of the append that fails with ``error`` (a full disk, a kill)."""

    def fail(*args: object, **kwargs: object) -> None:
        raise error

    return fail


def test_a_failed_append_rolls_back_to_the_old_shape(
    make_store: MakeStore, images_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store()
    files = store_files(store.path)
    # after the resize and the metadata writes
    monkeypatch.setattr(append_mod.zarr, "consolidate_metadata", _raises(OSError("disk quota exceeded")))
    with pytest.raises(OSError, match="disk quota exceeded"):
        append_samples(store.path, samples(images_root, NEW))
    monkeypatch.undo()
    assert store_files(store.path) == files
    assert not append_lock_path(store.path).exists() and open_store(store.path).layout.n_samples == 10
    assert append_samples(store.path, samples(images_root, NEW)).n_after == 14


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _write_lock(store_path: Path, info: LockInfo) -> None:
    path = append_lock_path(store_path)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(asdict(info)))


def _append_killed_after_resizing(
    store_path: Path, images_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leave ``store_path`` as a process killed mid-append would: no rollback ran, the journal and a
    stale lock (of a dead pid, a minute old) stay behind."""
    monkeypatch.setattr(append_mod, "write_sample_metadata", _raises(KeyboardInterrupt()))
    monkeypatch.setattr(append_mod, "rollback", lambda path: None)
    with pytest.raises(KeyboardInterrupt):
        append_samples(store_path, samples(images_root, NEW))
    monkeypatch.undo()
    _write_lock(store_path, LockInfo("append", socket.gethostname(), _dead_pid(), time.time() - 60, "append"))


def test_an_interrupted_append_is_explained_and_unlock_restores_the_store(
    make_store: MakeStore, loaded: LoadedModel, images_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store()
    files = store_files(store.path)

    _append_killed_after_resizing(store.path, images_root, monkeypatch)

    with pytest.raises(
        StoreLockedError,
        match=r"stale append lock .* which is no longer running; the append may "
        r"have stopped half-way\. If no sae-store command is using this store, run `sae-store unlock",
    ):
        append_samples(store.path, samples(images_root, NEW))
    with pytest.raises(StoreLockedError, match=r"stale append lock"):
        extract_activations(store, loaded, CFG)
    done = unlock_store(store.path).lines()
    assert done[0] == "rolled back the interrupted append: the store has 10 samples again"
    assert store_files(store.path) == files
    assert unlock_store(store.path).lines() == ["the store was not locked"]
    assert append_samples(store.path, samples(images_root, NEW)).n_after == 14


def test_an_append_whose_rollback_fails_keeps_the_store_locked_for_unlock(
    make_store: MakeStore, images_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store()
    files = store_files(store.path)
    monkeypatch.setattr(append_mod, "write_sample_metadata", _raises(OSError("disk quota exceeded")))
    monkeypatch.setattr(append_mod, "rollback", _raises(OSError("input/output error")))
    with pytest.raises(
        StoreLockedError,
        match=r"appending to store .* failed \(OSError: disk quota exceeded\) and rolling back failed too "
        r"\(input/output error\); the store stays locked: fix the cause, then run `sae-store unlock",
    ):
        append_samples(store.path, samples(images_root, NEW))
    monkeypatch.undo()
    assert append_lock_path(store.path).exists() and claim_path(store.path, 0).exists()
    dead = _dead_pid()  # as if the process had exited after reporting the error
    for f in (append_lock_path(store.path), *(store.path / LOCK_DIR).glob("block-*.claim")):
        f.write_text(json.dumps({**json.loads(f.read_text()), "pid": dead}))
    with pytest.raises(StoreLockedError, match=r"stale append lock"):
        append_samples(store.path, samples(images_root, NEW))
    lines = unlock_store(store.path).lines()
    assert lines[0] == "rolled back the interrupted append: the store has 10 samples again"
    assert lines[1].startswith("removed the claim of shard blocks [0, 1, 2, 3] by pid")
    assert store_files(store.path) == files and not (store.path / LOCK_DIR).exists()


def test_unlock_refuses_a_journal_whose_checksums_do_not_match(
    make_store: MakeStore, images_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store()
    _append_killed_after_resizing(store.path, images_root, monkeypatch)
    saved = store.path / LOCK_DIR / "append-journal" / "zarr.json"
    saved.write_text(saved.read_text().replace("n_samples", "n_samplez"))  # any change breaks the checksum
    half_appended = store_files(store.path)
    with pytest.raises(
        StoreLockedError,
        match=r"the append journal's copy of 'zarr.json' \(.*\) is missing or does not match its checksum; "
        r"nothing was changed",
    ):
        unlock_store(store.path)
    assert store_files(store.path) == half_appended


def test_concurrent_appends_and_extractions_exclude_each_other(
    make_store: MakeStore, loaded: LoadedModel, images_root: Path
) -> None:
    store = make_store()
    table = samples(images_root, NEW)
    with append_lock(store.path):
        with pytest.raises(StoreLockedError, match=r"an append is running on store .*: pid \d+ on host"):
            append_samples(store.path, table)
        with pytest.raises(StoreLockedError, match=r"an append is running"):
            extract_activations(store, loaded, CFG)
        with pytest.raises(StoreLockedError, match=r"an append is running .*; wait for it to finish"):
            unlock_store(store.path)
    with (
        register_extraction(store.path, [0]),
        pytest.raises(
            StoreLockedError, match=r"cannot append to store .* while extractions run \(pid \d+ on host"
        ),
    ):
        append_samples(store.path, table)
    assert not (store.path / LOCK_DIR).exists()  # no folder left for zarr to warn about
    assert open_store(store.path).layout.n_samples == 10


def test_stale_claims_are_taken_over_and_other_hosts_need_force(
    make_store: MakeStore, images_root: Path
) -> None:
    store = make_store()
    dead = LockInfo("extract", socket.gethostname(), _dead_pid(), time.time(), "extract", (0,), token="d")
    remote = LockInfo("extract", "node-17", 4242, time.time(), "extract", (1,), token="r")
    for block, info in ((0, dead), (1, remote)):
        claim_path(store.path, block).parent.mkdir(exist_ok=True)
        claim_path(store.path, block).write_text(json.dumps(asdict(info)))
    with pytest.raises(
        StoreLockedError,
        match=r"while extractions run \(pid 4242 on host 'node-17', started .*\); append when they have "
        r"finished .*; its last heartbeat was \d+ s ago .* `sae-store unlock .* --force`",
    ):
        append_samples(store.path, samples(images_root, NEW))
    assert not claim_path(store.path, 0).exists()  # the dead claim was taken over, then released
    # without --force the remote claim is kept and unlock says why; with it, it says what it removed
    assert (
        unlock_store(store.path)
        .lines()[0]
        .startswith("kept the claim of shard blocks [1] by pid 4242 on host")
    )
    _write_lock(store.path, LockInfo("append", "node-17", 4242, time.time(), "append"))
    with pytest.raises(StoreLockedError, match=r"on another host, whose state cannot be checked.* --force"):
        unlock_store(store.path)
    lines = unlock_store(store.path, force=True).lines()
    assert (
        lines[0].startswith("removed the append lock of pid 4242 on host 'node-17'") and "forced" in lines[0]
    )
    assert re.fullmatch(
        r"removed the claim of shard blocks \[1\] by pid 4242 on host 'node-17', started .* \(extract\) "
        r"\(last heartbeat \d+ s ago\), forced",
        lines[1],
    ), lines
    assert not (store.path / LOCK_DIR).exists()
    assert append_samples(store.path, samples(images_root, NEW)).n_after == 14


def test_a_remote_heartbeat_silent_for_long_is_dead(make_store: MakeStore) -> None:
    store = make_store()
    remote = LockInfo("extract", "node-17", 4242, time.time(), "extract", (1,), token="r")
    path = claim_path(store.path, 1)
    path.parent.mkdir()
    path.write_text(json.dumps(asdict(remote)))
    old = time.time() - 3600
    os.utime(path, (old, old))
    assert unlock_store(store.path).lines() == [
        f"removed the claim of shard blocks [1] by {remote.describe()} (last heartbeat 3600 s ago), "
        "which is no longer running"
    ]


def test_a_requeued_slurm_task_takes_its_own_claims_over(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store()
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "777")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    before = LockInfo("extract", "node-17", 4242, time.time(), "extract", (0, 1), job="777_3", token="old")
    for block in (0, 1):
        claim_path(store.path, block).parent.mkdir(exist_ok=True)
        claim_path(store.path, block).write_text(json.dumps(asdict(before)))
    with register_extraction(store.path, [0, 1]) as me:
        assert me.job == "777_3"
        assert all(json.loads(claim_path(store.path, b).read_text())["token"] == me.token for b in (0, 1))
    assert not (store.path / LOCK_DIR).exists()
    # another array task of the same job is another task: refused, with the hint to --force if stale
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    claim_path(store.path, 0).parent.mkdir()
    claim_path(store.path, 0).write_text(json.dumps(asdict(before)))
    with (
        pytest.raises(StoreLockedError, match=r"SLURM job 777_3.*which may be stale"),
        register_extraction(store.path, [0]),
    ):
        pass
