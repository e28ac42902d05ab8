"""What ``clear_claims`` and ``unlock_store`` report: records with their facts, lines and JSON."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import time
from pathlib import Path

from sae_store.store.append import UnlockResult, unlock_store
from sae_store.store.lock import ClaimRecord, LockInfo, append_lock_path, claim_path, clear_claims


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _write(path: Path, info: LockInfo, *, age: float | None = None) -> None:
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(info.to_dict()))
    if age is not None:
        then = time.time() - age
        os.utime(path, (then, then))


def _claims_of_three_tasks(store_path: Path) -> tuple[LockInfo, LockInfo, LockInfo]:
    """A dead task of this host on blocks 0-1, one of another host on 2, this very process on 3."""
    here = socket.gethostname()
    dead = LockInfo("extract", here, _dead_pid(), time.time() - 60, "extract", (0, 1), token="d")
    remote = LockInfo("extract", "node-17", 4242, time.time(), "extract", (2,), token="r")
    running = LockInfo("extract", here, os.getpid(), time.time(), "extract", (3,), token="me")
    for info in (dead, remote, running):
        for block in info.blocks:
            _write(claim_path(store_path, block), info, age=100 if info is remote else None)
    return dead, remote, running


def test_clear_claims_says_what_it_removed_and_kept(make_store) -> None:
    store = make_store(16, samples_per_shard=4)
    dead, remote, running = _claims_of_three_tasks(store.path)

    removed, kept_remote, kept_running = clear_claims(store.path)
    where = str(store.path)
    assert kept_remote.heartbeat_age is not None and 99 < kept_remote.heartbeat_age < 200
    assert [dataclasses.replace(r, heartbeat_age=None) for r in (removed, kept_remote, kept_running)] == [
        ClaimRecord("removed", where, (0, 1), dead, "dead", None, remote=False),
        ClaimRecord("kept", where, (2,), remote, "unknown", None, remote=True),
        ClaimRecord("kept", where, (3,), running, "running", None, remote=False),
    ]
    assert [r.describe() for r in (removed, kept_remote, kept_running)] == [
        f"removed the claim of shard blocks [0, 1] by {dead.describe()}, which is no longer running",
        f"kept the claim of shard blocks [2] by {remote.describe()} (last heartbeat "
        f"{kept_remote.heartbeat_age:.0f} s ago): its host cannot be checked: "
        f"`sae-store unlock {where} --force`",
        f"kept the claim of shard blocks [3] by {running.describe()}: it is running",
    ]
    assert [claim_path(store.path, b).exists() for b in range(4)] == [False, False, True, True]

    forced, still_running = clear_claims(store.path, force=True)
    assert (forced.action, forced.holder, forced.reason) == ("removed", remote, "forced")
    assert forced.describe().endswith(" s ago), forced")
    assert (still_running.action, still_running.holder) == ("kept", running)
    assert [claim_path(store.path, b).exists() for b in range(4)] == [False, False, False, True]


def test_unlock_store_records_render_the_lines_and_serialise_to_json(make_store) -> None:
    store = make_store(16, samples_per_shard=4)
    _, remote, running = _claims_of_three_tasks(store.path)
    lock = LockInfo("append", socket.gethostname(), _dead_pid(), time.time() - 60, "append", token="a")
    _write(append_lock_path(store.path), lock)
    _write(claim_path(store.path, 9), dataclasses.replace(lock, blocks=(9,)))  # the append's own claim

    result = unlock_store(store.path)
    assert isinstance(result, UnlockResult) and result.locked
    assert (result.rolled_back_to, result.append_lock, result.append_lock_state) == (None, lock, "dead")
    assert [(c.holder.token, c.action) for c in result.claims] == [
        ("a", "removed"),
        ("d", "removed"),
        ("r", "kept"),
        ("me", "kept"),
    ]
    lines = result.lines()
    assert lines[0] == result.claims[0].describe()
    assert lines[0].startswith("removed the claim of shard blocks [9]")
    assert lines[1] == f"removed the append lock of {lock.describe()}"
    assert lines[2:] == [c.describe() for c in result.claims[1:]]

    data = result.to_dict()
    assert json.loads(json.dumps(data)) == data  # plain JSON values only: no tuples, paths or objects
    assert data["store"] == str(store.path) and data["locked"] and data["rolled_back_to"] is None
    assert data["append_lock"] == {"holder": lock.to_dict(), "state": "dead", "forced": False}
    assert data["claims"][2] == {
        "action": "kept",
        "store": str(store.path),
        "blocks": [2],
        "holder": remote.to_dict(),
        "state": "unknown",
        "heartbeat_age": result.claims[2].heartbeat_age,
        "remote": True,
        "reason": f"its host cannot be checked: `sae-store unlock {store.path} --force`",
    }

    assert unlock_store(store.path).lines() == [c.describe() for c in result.claims[2:]]
    assert [(c.holder, c.action) for c in unlock_store(store.path, force=True).claims] == [
        (remote, "removed"),
        (running, "kept"),
    ]
    claim_path(store.path, 3).unlink()
    nothing = unlock_store(store.path)
    assert nothing.lines() == ["the store was not locked"]
    assert nothing.to_dict() == {
        "store": str(store.path),
        "locked": False,
        "rolled_back_to": None,
        "append_lock": None,
        "claims": [],
        "temporary_files": [],
        "unreadable": [],
    }


def test_unlock_json_prints_the_records(make_store, capsys) -> None:
    from sae_store_cli.main import main

    store = make_store(16, samples_per_shard=4)
    _claims_of_three_tasks(store.path)
    assert main(["unlock", str(store.path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(c["holder"]["token"], c["action"]) for c in data["claims"]] == [
        ("d", "removed"),
        ("r", "kept"),
        ("me", "kept"),
    ]
