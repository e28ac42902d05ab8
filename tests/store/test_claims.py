"""Claims of shard blocks between processes, on a file system that shows new files late.

``SAE_STORE_FS_DELAY`` (read when :mod:`sae_store.faults` is imported, so set in the environment
of the processes a test starts) makes the lock module blind, for that many seconds, to files other
processes created - what another node sees on NFS, Lustre or GPFS while its attribute and directory
caches are stale. Exclusive creation still fails on an existing name (the server decides it), so a
protocol deciding on creation holds, and one deciding on listings or start times does not.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import asdict
from pathlib import Path

import pytest

from sae_store import faults
from sae_store.errors import StoreLockedError
from sae_store.faults import FS_DELAY_ENV, SlowFileSystem
from sae_store.store.lock import LockInfo, claim_path, claims, heartbeat_age, register_extraction
from sae_store.store.lock_files import lookup

DELAY = 1.5

# Waits for a common start time, claims BLOCKS, holds them for HOLD seconds; prints the outcome.
_CLAIM = """
import sys, time
from sae_store.errors import StoreLockedError
import pytest

from sae_store.errors import StoreLockedError
from sae_store.store.lock import register_extraction
store, start, hold, blocks = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
time.sleep(max(0.0, start - time.time()))
try:
    with register_extraction(store, [int(b) for b in blocks.split(",")]):
        print("claimed", flush=True)
        time.sleep(hold)
except StoreLockedError as e:
    print("refused:", e, flush=True)
"""


def _race(store: Path, blocks: list[str], *, hold: float = DELAY + 2.0) -> list[str]:
    env = {**os.environ, FS_DELAY_ENV: str(DELAY)}
    start = time.time() + 2.0  # after both interpreters have imported the package
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIM, str(store), str(start), str(hold), b],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for b in blocks
    ]
    return [p.communicate(timeout=60)[0].strip() for p in procs]


def test_two_tasks_claiming_the_same_blocks_on_a_slow_file_system_never_both_run(make_store) -> None:
    store = make_store(12, samples_per_shard=4)
    outcomes = _race(store.path, ["0,1", "1,2"])
    assert sorted(o.split(":")[0].split()[0] for o in outcomes) == ["claimed", "refused"], outcomes
    refused = next(o for o in outcomes if o.startswith("refused"))
    assert "shard blocks [1] of store" in refused and "are being extracted by pid" in refused
    assert not claims(store.path)  # the winner released its claims


def test_a_dead_claim_found_by_two_tasks_at_once_is_taken_over_by_one(make_store) -> None:
    store = make_store(8, samples_per_shard=4)
    dead = subprocess.Popen(["true"])
    dead.wait()
    info = LockInfo(
        "extract", socket.gethostname(), dead.pid, time.time() - 60, "extract", (0,), token="gone"
    )
    claim_path(store.path, 0).parent.mkdir()
    claim_path(store.path, 0).write_text(json.dumps(asdict(info)))
    outcomes = _race(store.path, ["0", "0"])
    assert sorted(o.split()[0] for o in outcomes) == ["claimed", "refused:"], outcomes


def test_the_delay_hides_fresh_files_of_others_but_not_from_exclusive_creation(
    make_store, monkeypatch
) -> None:
    store = make_store(8, samples_per_shard=4)
    other = LockInfo(
        "extract", socket.gethostname(), os.getppid(), time.time() - 60, "extract", (0,), token="x"
    )
    claim_path(store.path, 0).parent.mkdir()
    claim_path(store.path, 0).write_text(json.dumps(asdict(other)))  # not created by this process
    monkeypatch.setattr(faults, "slow_fs", SlowFileSystem(30))  # what SAE_STORE_FS_DELAY=30 sets
    assert claims(store.path) == []  # a listing misses it: no decision may rest on that
    monkeypatch.setattr("sae_store.store.lock.VISIBLE_WAIT_S", 0.5)
    with (
        pytest.raises(
            StoreLockedError, match=r"which this host cannot read after 0 s \(the file system shows new"
        ),
        register_extraction(store.path, [0]),
    ):
        pass
    monkeypatch.setattr(faults, "slow_fs", None)
    assert [i.token for _, i in claims(store.path)] == ["x"]


class _WatchedEnviron(MutableMapping[str, str]):
    """``os.environ`` that records every variable read through it."""

    def __init__(self, env: MutableMapping[str, str]) -> None:
        self.env, self.read = env, []

    def __getitem__(self, key: str) -> str:
        self.read.append(key)
        return self.env[key]

    def __setitem__(self, key: str, value: str) -> None:
        self.env[key] = value

    def __delitem__(self, key: str) -> None:
        del self.env[key]

    def __iter__(self) -> Iterator[str]:
        self.read.append("*")
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)


def test_without_the_variable_lookups_never_read_the_environment(make_store, monkeypatch) -> None:
    assert FS_DELAY_ENV not in os.environ and faults.slow_fs is None  # read once, at import
    store = make_store(8, samples_per_shard=4)
    other = LockInfo("extract", "node-17", 4242, time.time(), "extract", (0,), token="x")
    claim_path(store.path, 0).parent.mkdir()
    claim_path(store.path, 0).write_text(json.dumps(asdict(other)))
    watched = _WatchedEnviron(os.environ)
    monkeypatch.setattr(os, "environ", watched)
    assert lookup(claim_path(store.path, 0)) is not None and lookup(claim_path(store.path, 1)) is None
    assert [i.token for _, i in claims(store.path)] == ["x"]
    assert heartbeat_age(claim_path(store.path, 0)) is not None
    assert watched.read == []


_SEES = """
import sys
from pathlib import Path
from sae_store import faults
from sae_store.store.lock import new_lock_info
from sae_store.store.lock_files import create_lock, lookup
theirs, mine = Path(sys.argv[1]), Path(sys.argv[2])
create_lock(mine, new_lock_info("extract", "extract"))
print(faults.slow_fs.delay, lookup(theirs) is None, lookup(mine) is None)
"""


def test_the_variable_turns_the_delay_on_in_the_processes_it_is_set_for(tmp_path) -> None:
    theirs = tmp_path / "block-0.claim"
    theirs.write_text("{}")  # created by another process, just now
    env = {**os.environ, FS_DELAY_ENV: "30"}
    args = [sys.executable, "-c", _SEES, str(theirs), str(tmp_path / "block-1.claim")]
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.split() == ["30.0", "True", "False"]  # theirs hidden, its own file seen at once


def test_a_delay_that_is_not_a_number_is_refused(monkeypatch) -> None:
    monkeypatch.setenv(FS_DELAY_ENV, "soon")
    with pytest.raises(ValueError, match=r"SAE_STORE_FS_DELAY must be a number of seconds .*, got 'soon'"):
        faults._slow_fs_from_env()
