"""Who is changing a store: an exclusive append lock and per-block claims of running extractions.

Every decision is taken on an exclusive file creation, never on a listing or on a time read before
a file is visible: on NFS, Lustre and GPFS the server decides whether ``link`` creates a name, while
lookups and listings of other nodes may be served from caches that miss new files for a while.

- An extraction *claims* each shard block it writes by creating ``block-<i>.claim`` (write a
  temporary file, then ``link`` it to the claim name, which fails if the name exists). A task
  that cannot create a claim reads who holds it and refuses - or takes the claim over when it is
  its own (the same SLURM job and array task id: a requeued task) or its holder is dead.
- ``append`` creates ``append.lock`` the same way, then claims every block of the grown store, so
  an append and an extraction of the same store cannot both run.
- A claim of another host is known to be alive by its heartbeat (the file's mtime, touched every
  :data:`HEARTBEAT_S` seconds and compared with the file system's own clock); one silent for
  :data:`STALE_AFTER_S` seconds is dead. On the same host the pid and its start time are checked.

The protocol is documented in ``docs/store-schema.md`` ("Locks and appends").
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import psutil

from sae_store.errors import StoreLockedError

LOCK_DIR = ".sae-store-locks"
APPEND_LOCK = "append.lock"
HEARTBEAT_S = 30.0
#: A claim from another host whose heartbeat is older than this is considered dead.
STALE_AFTER_S = 600.0
#: Fault injection for tests: files of other processes younger than this many seconds are invisible
#: to this module's lookups, as on a network file system whose caches show new files late.
FS_DELAY_ENV = "SAE_STORE_FS_DELAY"
#: How long a claim that exists but cannot be read yet is waited for before giving up.
VISIBLE_WAIT_S = 10.0

State = Literal["running", "dead", "unknown"]
Kind = Literal["append", "extract"]

# Files this process created: visible to it at once, whatever the simulated delay.
_created_here: set[Path] = set()


@dataclass(frozen=True)
class LockInfo:
    """The content of a lock or claim file."""

    kind: Kind
    host: str
    pid: int
    started: float
    command: str = ""
    blocks: tuple[int, ...] = ()
    """Shard blocks the task claims (every block of the grown store for an append)."""
    job: str = ""
    """SLURM ``<job id>_<array task id>`` of the task ("" outside SLURM); a requeued task keeps it."""
    token: str = ""
    """Unique per task: tells one holder's files from another's."""

    def describe(self) -> str:
        when = _dt.datetime.fromtimestamp(self.started).isoformat(sep=" ", timespec="seconds")
        job = f", SLURM job {self.job}" if self.job else ""
        what = f" ({self.command})" if self.command else ""
        return f"pid {self.pid} on host {self.host!r}{job}, started {when}{what}"


class BlockTakenError(StoreLockedError):
    """A shard block is claimed by another task (``holder``); its ``state`` and heartbeat ``age``."""

    def __init__(self, message: str, holder: LockInfo, state: State, age: float | None) -> None:
        super().__init__(message)
        self.holder, self.state, self.age = holder, state, age


class KeepLockedError(StoreLockedError):
    """The store was left half-changed: the lock and claims stay until ``sae-store unlock``."""


def lock_dir(store_path: str | Path) -> Path:
    """The folder holding a store's lock and claim files."""
    return Path(store_path) / LOCK_DIR


def append_lock_path(store_path: str | Path) -> Path:
    return lock_dir(store_path) / APPEND_LOCK


def claim_path(store_path: str | Path, block: int) -> Path:
    """The claim file of shard block ``block`` (its index, ``start // samples_per_shard``)."""
    return lock_dir(store_path) / f"block-{block}.claim"


def slurm_job() -> str:
    """``<job id>_<array task id>`` of this SLURM task (``<job id>`` outside arrays; ``.<rank>`` added for
    ranks of a multi-task step), "" outside SLURM. A requeued task keeps it."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID", "")
    task = os.environ.get("SLURM_ARRAY_TASK_ID", "")
    rank = os.environ.get("SLURM_PROCID", "0")
    if not job:
        return ""
    return (f"{job}_{task}" if task else job) + (f".{rank}" if rank != "0" else "")


def _lookup(path: Path) -> os.stat_result | None:
    """``stat`` of ``path``, or None if it is absent - or, under the simulated delay, too new."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    delay = float(os.environ.get(FS_DELAY_ENV) or 0)
    if delay and path not in _created_here and time.time() - st.st_ctime < delay:
        return None
    return st


def _read(path: Path) -> LockInfo | None:
    """The file's content, or None if it is absent (or not visible here yet)."""
    if _lookup(path) is None:
        return None
    try:
        data = json.loads(path.read_text())
        data["blocks"] = tuple(data.get("blocks", ()))
        return LockInfo(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as e:
        raise StoreLockedError(
            f"lock file {str(path)!r} is unreadable ({e}); if no sae-store command is using the store, "
            "delete it"
        ) from e


def _create(path: Path, info: LockInfo) -> tuple[bool, float]:
    """Create ``path`` holding ``info`` if it does not exist, in one atomic step.

    Returns whether it was created, and the file system's clock (the mtime of the temporary file
    written first), against which other files' heartbeats are compared.
    """
    for _ in range(10):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        try:
            with open(tmp, "x") as f:
                f.write(json.dumps(asdict(info)))
        except FileNotFoundError:  # another process removed the folder as it became empty
            continue
        try:
            now = tmp.stat().st_mtime
            try:
                os.link(tmp, path)  # atomic on the server, and fails if ``path`` exists
            except FileExistsError:
                return False, now
            except OSError:
                # NFS may report an error for a retransmitted link that did succeed: count the links.
                if tmp.stat().st_nlink != 2:
                    raise
            _created_here.add(path)
            return True, now
        finally:
            tmp.unlink(missing_ok=True)
    raise StoreLockedError(f"could not create {str(path)!r}: its folder keeps disappearing")


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    _created_here.discard(path)
    # No empty folder is left behind: zarr warns about every non-zarr entry when it lists the store.
    with contextlib.suppress(OSError):
        path.parent.rmdir()


def _remove_if(path: Path, token: str) -> None:
    """Remove ``path`` if it still belongs to the task with ``token``."""
    with contextlib.suppress(StoreLockedError):
        info = _read(path)
        if info is not None and info.token == token:
            _remove(path)


@contextlib.contextmanager
def ignoring_lock_dir() -> Iterator[None]:
    """Silence zarr's warning about the lock folder while it lists the store's members."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f"Object at {re.escape(LOCK_DIR)} is not recognized")
        yield


def new_lock_info(kind: Kind, command: str, blocks: Sequence[int] = ()) -> LockInfo:
    """The lock content describing this process."""
    return LockInfo(
        kind,
        socket.gethostname(),
        os.getpid(),
        time.time(),
        command,
        tuple(blocks),
        slurm_job(),
        uuid.uuid4().hex,
    )


def heartbeat_age(path: Path, now: float | None = None) -> float | None:
    """Seconds since ``path`` was last touched (``now`` from the file system's clock), None if unseen."""
    st = _lookup(path)
    return None if st is None else max(0.0, (now if now is not None else time.time()) - st.st_mtime)


def state(info: LockInfo, path: Path | None = None, now: float | None = None) -> State:
    """Whether the process behind ``info`` is running, dead, or unknown (another host, fresh file)."""
    if info.host == socket.gethostname():
        try:
            created = psutil.Process(info.pid).create_time()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return "dead"
        # A pid reused by a process that started after the lock was written is not the writer.
        return "running" if created <= info.started + 1.0 else "dead"
    if info.job and info.job == slurm_job():
        return "dead"  # this very SLURM task, requeued onto another node: SLURM never runs it twice
    age = heartbeat_age(path, now) if path is not None else None
    return "dead" if age is not None and age > STALE_AFTER_S else "unknown"


def read_append_lock(store_path: str | Path) -> LockInfo | None:
    """The current append lock, or None."""
    return _read(append_lock_path(store_path))


def stale_lock_message(store_path: str | Path, info: LockInfo, st: State) -> str:
    """How to explain an append lock that blocks the caller."""
    lock = append_lock_path(store_path)
    if st == "running":
        return f"an append is running on store {str(store_path)!r}: {info.describe()}; wait for it to finish"
    why = "which is no longer running" if st == "dead" else "on another host, whose state cannot be checked"
    return (
        f"store {str(store_path)!r} has a stale append lock {str(lock)!r} left by {info.describe()}, {why}; "
        f"the append may have stopped half-way. If no sae-store command is using this store, run "
        f"`sae-store unlock {store_path}`{'' if st == 'dead' else ' --force'} (it restores the store's "
        "previous shape if needed and removes the lock)"
    )


def _taken_message(
    store_path: str | Path, mine: Sequence[int], other: LockInfo, st: State, age: float | None
) -> str:
    if other.kind == "append":
        return stale_lock_message(store_path, other, st)
    shared = sorted(set(mine) & set(other.blocks)) or list(mine)
    head = (
        f"shard blocks {shared[:8]}{' ...' if len(shared) > 8 else ''} of store {str(store_path)!r} are "
        f"being extracted by {other.describe()}"
    )
    if st == "running":
        return (
            f"{head}; give each task its own range (--task-index/--task-count, or non-overlapping --samples)"
        )
    beat = f"{age:.0f} s ago" if age is not None else "not visible from this host yet"
    return (
        f"{head}, which may be stale: its last heartbeat was {beat} (a task on another host is taken for "
        f"dead after {STALE_AFTER_S:.0f} s without one). If that task is no longer running, clear its claim "
        f"with `sae-store unlock {store_path} --force`; a requeued SLURM task takes its own claims over "
        "by itself"
    )


def _take_over(path: Path, other: LockInfo, me: LockInfo) -> bool:
    """Replace the dead ``other``'s claim at ``path`` by ``me``'s; False if someone else got there first.

    Only the process that creates the takeover marker of ``other``'s token may remove that claim,
    so two processes finding the same dead claim cannot remove each other's fresh ones.
    """
    marker = path.with_name(f"{path.name}.takeover-{other.token or other.pid}")
    created, now = _create(marker, me)
    if not created:
        holder = _read(marker)
        if holder is None or state(holder, marker, now) != "dead":
            return False
        _remove(marker)
        created, _ = _create(marker, me)
        if not created:
            return False
    try:
        current = _read(path)
        if current is None or current.token != other.token:
            return False
        path.unlink(missing_ok=True)
        return _create(path, me)[0]
    finally:
        _remove(marker)


def _claim(store_path: str | Path, block: int, me: LockInfo) -> Path:
    path = claim_path(store_path, block)
    deadline = time.monotonic() + VISIBLE_WAIT_S
    pause = 0.05
    while True:
        created, now = _create(path, me)
        if created:
            return path
        other = _read(path)
        if other is None:  # released meanwhile, or not visible from here yet: try again
            if time.monotonic() > deadline:
                raise StoreLockedError(
                    f"shard block {block} of store {str(store_path)!r} is claimed by {str(path)!r}, which "
                    f"this host cannot read after {VISIBLE_WAIT_S:.0f} s (the file system "
                    "shows new files late); try again in a minute"
                )
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
            continue
        st = state(other, path, now)
        if st == "dead" and other.kind == "extract":
            if _take_over(path, other, me):
                return path
            if time.monotonic() < deadline:  # another process is replacing it: look at the new holder
                time.sleep(pause)
                continue
        age = heartbeat_age(path, now)
        raise BlockTakenError(_taken_message(store_path, me.blocks, other, st, age), other, st, age)


@contextlib.contextmanager
def claim_blocks(store_path: str | Path, me: LockInfo) -> Iterator[list[Path]]:
    """Claim every block of ``me.blocks`` for as long as the context lasts (all of them or none).

    Raises
    ------
    BlockTakenError
        If a block is claimed by a task that may be running, or by an append.
    """
    held: list[Path] = []
    try:
        for block in me.blocks:
            held.append(_claim(store_path, block, me))
        yield held
    except KeepLockedError:
        held = []
        raise
    finally:
        for path in held:
            _remove_if(path, me.token)


@contextlib.contextmanager
def append_lock(store_path: str | Path, *, command: str = "append") -> Iterator[LockInfo]:
    """Hold the store's exclusive append lock (claim the blocks with :func:`claim_blocks` next).

    Raises
    ------
    StoreLockedError
        If the lock is held (by a running or a dead process).
    """
    path = append_lock_path(store_path)
    me = new_lock_info("append", command)
    created, now = _create(path, me)
    if not created:
        other = _read(path)
        if other is None:  # released in the meantime, or not visible yet
            raise StoreLockedError(f"store {str(store_path)!r} was being appended to; try again")
        raise StoreLockedError(stale_lock_message(store_path, other, state(other, path, now)))
    keep = False
    try:
        yield me
    except KeepLockedError:
        keep = True
        raise
    finally:
        if not keep:
            _remove_if(path, me.token)


def claims(store_path: str | Path) -> list[tuple[Path, LockInfo]]:
    """Every readable claim file of the store with its content."""
    folder = lock_dir(store_path)
    found = [(p, _read(p)) for p in sorted(folder.glob("block-*.claim"))] if folder.is_dir() else []
    return [(p, info) for p, info in found if info is not None]


def clear_claims(
    store_path: str | Path, *, force: bool = False, kinds: Sequence[Kind] = ("extract",)
) -> list[str]:
    """Remove the claims of dead tasks (and with ``force`` of other hosts' tasks); say what was removed.

    Claims of a task still running on this host are never removed; ones of another host whose
    heartbeat is fresh are listed with how to clear them unless ``force``.
    """
    by_task: dict[str, list[tuple[Path, LockInfo]]] = {}
    for path, info in claims(store_path):
        if info.kind in kinds:
            by_task.setdefault(info.token, []).append((path, info))
    lines = []
    for held in by_task.values():
        path, info = held[0]
        st = state(info, path)
        blocks = sorted(int(p.stem.removeprefix("block-")) for p, _ in held)
        age = heartbeat_age(path)
        what = f"the claim of shard blocks {blocks} by {info.describe()}" + (
            f" (last heartbeat {age:.0f} s ago)"
            if age is not None and info.host != socket.gethostname()
            else ""
        )
        if st == "running" or (st == "unknown" and not force):
            how = (
                "it is running"
                if st == "running"
                else f"its host cannot be checked: `sae-store unlock {store_path} --force`"
            )
            lines.append(f"kept {what}: {how}")
            continue
        for p, _ in held:
            _remove(p)
        lines.append(f"removed {what}, " + ("which is no longer running" if st == "dead" else "forced"))
    return lines


def release_append_lock(store_path: str | Path) -> None:
    """Remove the append lock (used by ``unlock`` after checking that its holder is gone)."""
    _remove(append_lock_path(store_path))


class _Heartbeat(threading.Thread):
    """Touches claim files so that other hosts can tell a running extraction from a dead one."""

    def __init__(self, paths: Sequence[Path]) -> None:
        super().__init__(daemon=True, name="sae-store-heartbeat")
        self.paths = list(paths)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            for path in self.paths:
                with contextlib.suppress(OSError):
                    os.utime(path)  # NULL times: the server's clock on NFS


@contextlib.contextmanager
def register_extraction(
    store_path: str | Path, blocks: Sequence[int], *, command: str = "extract"
) -> Iterator[LockInfo]:
    """Claim shard ``blocks`` for a running extraction for as long as the context lasts.

    Raises
    ------
    StoreLockedError
        If an append holds the lock (running or stale), or a task that may be running claims some
        of the same blocks (two writers of one block waste the work of one).
    """
    me = new_lock_info("extract", command, blocks)
    with claim_blocks(store_path, me) as paths:
        held = read_append_lock(store_path)  # an append killed before it claimed the blocks
        if held is not None:
            raise StoreLockedError(
                stale_lock_message(store_path, held, state(held, append_lock_path(store_path)))
            )
        beat = _Heartbeat(paths)
        beat.start()
        try:
            yield me
        finally:
            beat.stopped.set()
