"""An interrupted append is visible to every command until ``unlock``, which clears every lock file it
left - after a full disk too - and ``status`` lists the claims of extractions with their heartbeats."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from sae_store.store import lock_files, open_store
from sae_store.store.append import unlock_store
from sae_store.store.lock import LOCK_DIR, LockInfo, append_lock_path, claim_path, journal_path
from sae_store.store.lock_files import create_lock, new_lock_info
from sae_store_cli.main import main
from tests.conftest import samples_table

from .refusals import assert_every_command_refuses


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _dead_append(store: Path) -> LockInfo:
    info = LockInfo(
        "append", socket.gethostname(), _dead_pid(), time.time() - 60, "append", (0, 1), token="a"
    )
    assert create_lock(append_lock_path(store), info)[0]
    return info


def test_a_dead_append_lock_is_seen_by_every_command_until_unlock(make_store, tmp_path, capsys) -> None:
    store = make_store(10).path
    info = _dead_append(store)
    message = (
        f"store {str(store)!r} has a stale append lock {str(append_lock_path(store))!r} left by "
        f"{info.describe()}, which is no longer running; the append may have stopped half-way. If no "
        f"sae-store command is using this store, run `sae-store unlock {store}` (it restores the store's "
        "previous shape if needed and removes the lock)"
    )
    assert_every_command_refuses(store, message, tmp_path, capsys)
    assert main(["unlock", str(store)]) == 0
    assert capsys.readouterr().out == f"removed the append lock of {info.describe()}\n"
    assert main(["status", str(store)]) == 0 and not (store / LOCK_DIR).exists()


def test_a_running_append_is_waited_for(make_store, tmp_path, capsys) -> None:
    store = make_store(10).path
    me = new_lock_info("append", "append")
    assert create_lock(append_lock_path(store), me)[0]
    message = f"an append is running on store {str(store)!r}: {me.describe()}; wait for it to finish"
    assert_every_command_refuses(store, message, tmp_path, capsys)


def test_a_journal_left_without_its_lock_is_rolled_back_by_unlock(make_store, tmp_path, capsys) -> None:
    store = make_store(10).path
    before = (store / "zarr.json").read_bytes()
    journal_path(store).mkdir(parents=True)
    (journal_path(store) / "zarr.json").write_bytes(before)
    digest = hashlib.sha256(before).hexdigest()
    (journal_path(store) / "manifest.json").write_text(
        json.dumps({"n_samples": 10, "files": {"zarr.json": digest}})
    )
    grown = before.replace(b'"n_samples\\": 10', b'"n_samples\\": 12')
    assert grown != before
    (store / "zarr.json").write_bytes(grown)  # as an append killed after switching the size
    message = (
        f"store {str(store)!r} has an unfinished append (its journal {str(journal_path(store))!r} is still "
        f"there); if no sae-store command is using this store, run `sae-store unlock {store}` (it restores "
        "the store's previous shape and removes the journal)"
    )
    assert_every_command_refuses(store, message, tmp_path, capsys)
    assert main(["unlock", str(store)]) == 0
    assert capsys.readouterr().out == "rolled back the interrupted append: the store has 10 samples again\n"
    assert (store / "zarr.json").read_bytes() == before and not (store / LOCK_DIR).exists()


class _FullDisk:
    """A file opened for writing on a full disk: created, but every write fails (with no file name,
    as the system call reports it)."""

    def __init__(self, path: Path, mode: str) -> None:
        self.file = open(path, mode)  # noqa: SIM115

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_an_append_on_a_full_disk_names_the_file_and_leaves_no_lock_file(
    make_store, tmp_path, monkeypatch, capsys
) -> None:
    store = make_store(10).path
    table = tmp_path / "new.csv"
    samples_table(2, prefix="n").to_csv(table, index=False)
    monkeypatch.setattr(lock_files, "open", _FullDisk, raising=False)
    assert main(["append", str(store), "--samples", str(table)]) == 2
    err = capsys.readouterr().err
    lock = append_lock_path(store)
    tmp = f"{lock.parent}/.append.lock.{socket.gethostname()}.{os.getpid()}."
    prefix = f"sae-store append: error: No space left on device writing '{tmp}"
    assert err.startswith(prefix), err
    assert err.endswith("': free space or raise the quota (see `sae-store du STORE`), then rerun\n")
    assert not (store / LOCK_DIR).exists()  # nothing stays behind: no lock, no temporary file
    monkeypatch.undo()
    assert main(["unlock", str(store)]) == 0
    assert capsys.readouterr().out == "the store was not locked\n"
    assert main(["append", str(store), "--samples", str(table)]) == 0
    assert open_store(store).layout.n_samples == 12


def test_unlock_removes_temporary_lock_files_of_dead_processes_only(make_store, capsys) -> None:
    store = make_store(10).path
    folder = store / LOCK_DIR
    folder.mkdir()
    here = socket.gethostname()
    dead = folder / f".append.lock.{here}.{_dead_pid()}.0123abcd"
    mine = folder / f".block-0.claim.{here}.{os.getpid()}.4567ef01"
    remote_old = folder / ".append.lock.node-17.cluster.org.4242.89ab"
    remote_new = folder / ".block-2.claim.node-18.4243.cdef"
    for f in (dead, mine, remote_old, remote_new):
        f.write_text("")
    then = time.time() - 3600
    os.utime(remote_old, (then, then))
    assert main(["unlock", str(store)]) == 0
    gone = "left by a process that is gone"
    assert sorted(capsys.readouterr().out.splitlines()) == sorted(
        f"removed the temporary lock file {str(f)!r}, {gone}" for f in (dead, remote_old)
    )
    assert sorted(folder.iterdir()) == sorted([mine, remote_new])
    # forced: another host's recent one goes too; a running process of this host is never touched
    assert unlock_store(store, force=True).temporary_files == (str(remote_new),)
    assert sorted(folder.iterdir()) == [mine]


def test_an_unreadable_append_lock_is_reported_and_removed_by_unlock_force(make_store, capsys) -> None:
    store = make_store(10).path
    lock = append_lock_path(store)
    lock.parent.mkdir()
    lock.write_text("")  # e.g. a file system that lost the write
    assert main(["status", str(store)]) == 1
    out = capsys.readouterr().out
    assert f"ERROR: lock file {str(lock)!r} is unreadable (" in out
    assert (
        f"run `sae-store unlock {store} --force` (it removes it and rolls back an unfinished append)" in out
    )
    assert main(["unlock", str(store)]) == 2
    assert capsys.readouterr().err == (
        f"sae-store unlock: error: lock file(s) {str(lock)!r} of store {str(store)!r} cannot be read "
        "(damaged, or written by a process that died on a full disk); if no sae-store command is using "
        f"this store, run `sae-store unlock {store} --force` (it removes them and rolls back an unfinished "
        "append)\n"
    )
    assert main(["unlock", str(store), "--force"]) == 0
    assert capsys.readouterr().out == f"removed the unreadable lock file {str(lock)!r}, forced\n"
    assert not (store / LOCK_DIR).exists()


def test_status_lists_claims_with_their_state_and_heartbeat_age(make_store, capsys) -> None:
    store = make_store(16).path
    dead = LockInfo(
        "extract", socket.gethostname(), _dead_pid(), time.time() - 60, "extract", (0, 1), token="d"
    )
    remote = LockInfo("extract", "node-17", 4242, time.time(), "extract", (3,), token="r")
    for info in (dead, remote):
        for block in info.blocks:
            assert create_lock(claim_path(store, block), info)[0]
            then = time.time() - 42
            os.utime(claim_path(store, block), (then, then))
    assert main(["status", str(store)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("claim: ")]
    assert lines == [
        f"claim: shard blocks [0, 1] by {dead.describe()} (last heartbeat 42 s ago): no longer running: "
        f"`sae-store unlock {store}` clears it",
        f"claim: shard blocks [3] by {remote.describe()} (last heartbeat 42 s ago): on another host, taken "
        f"for dead after 600 s without a heartbeat; if it is not running, `sae-store unlock {store} --force` "
        "clears it",
    ]
    assert main(["status", str(store), "--json"]) == 0
    claims = json.loads(capsys.readouterr().out)["claims"]
    assert [(c["blocks"], c["state"], round(c["heartbeat_age"])) for c in claims] == [
        ([0, 1], "dead", 42),
        ([3], "unknown", 42),
    ]


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    return done.returncode == 0


def test_an_append_on_a_really_full_file_system_leaves_nothing_for_unlock(
    make_store, tmp_path, capsys
) -> None:
    """The same on a real small tmpfs filled to the last byte (needs the right to mount one)."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "4m"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        store = disk / "store.zarr"
        shutil.copytree(make_store(10).path, store)
        table = tmp_path / "new.csv"
        samples_table(2, prefix="n").to_csv(table, index=False)
        with open(disk / "filler", "wb", buffering=0) as f:
            with pytest.raises(OSError) as full:
                while True:
                    f.write(b"\0" * 4096)
            assert full.value.errno == errno.ENOSPC
        assert main(["append", str(store), "--samples", str(table)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"sae-store append: error: No space left on device writing '{store}/"), err
        assert "''" not in err
        assert not (store / LOCK_DIR).exists()
        assert main(["unlock", str(store)]) == 0
        assert capsys.readouterr().out == "the store was not locked\n"
        assert main(["status", str(store)]) == 0
        (disk / "filler").unlink()
        assert main(["append", str(store), "--samples", str(table)]) == 0
        assert open_store(store).layout.n_samples == 12
    finally:
        subprocess.run(["umount", str(disk)], check=False)
