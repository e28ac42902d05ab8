"""Who is changing a store: an exclusive append lock and registrations of running extractions.

Both live as small JSON files in ``STORE/.sae-store-locks/`` (host, pid, start time, command).
``append`` creates ``append.lock`` exclusively and then refuses if an extraction is registered;
an extraction registers itself and then refuses if an append holds the lock. Each side writes its
own file before looking for the other, so two processes starting at once cannot both proceed.

A file left by a process that died is *stale*: on the same host the pid is checked (and its start
time, against pid reuse); another host's extraction keeps its registration fresh with a heartbeat
(the file's mtime), so one not refreshed for :data:`STALE_AFTER_S` seconds is stale. Stale
extraction registrations are removed; a stale append lock is refused with an explanation, because
the append it guarded may have been interrupted half-way (``sae-store unlock`` repairs that).
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
#: A registration from another host whose heartbeat is older than this is considered dead.
STALE_AFTER_S = 600.0

State = Literal["running", "dead", "unknown"]


@dataclass(frozen=True)
class LockInfo:
    """The content of a lock or registration file."""

    kind: Literal["append", "extract"]
    host: str
    pid: int
    started: float
    command: str = ""
    blocks: tuple[int, ...] = ()
    """Shard blocks an extraction works on (empty for an append)."""

    def describe(self) -> str:
        when = _dt.datetime.fromtimestamp(self.started).isoformat(sep=" ", timespec="seconds")
        what = f" ({self.command})" if self.command else ""
        return f"pid {self.pid} on host {self.host!r}, started {when}{what}"


def lock_dir(store_path: str | Path) -> Path:
    """The folder holding a store's lock and registration files."""
    return Path(store_path) / LOCK_DIR


def _read(path: Path) -> LockInfo | None:
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


def _write_new(path: Path, info: LockInfo, *, exclusive: bool) -> None:
    """Write ``info`` to ``path`` in one step: readers see all of it or nothing."""
    for _ in range(10):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        try:
            tmp.write_text(json.dumps(asdict(info)))
        except FileNotFoundError:  # another process removed the folder as it became empty
            continue
        try:
            if exclusive:
                os.link(tmp, path)  # fails if ``path`` exists, unlike rename
            else:
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return
    raise StoreLockedError(f"could not create {str(path)!r}: its folder keeps disappearing")


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    # No empty folder is left behind: zarr warns about every non-zarr entry when it lists the store.
    with contextlib.suppress(OSError):
        path.parent.rmdir()


@contextlib.contextmanager
def ignoring_lock_dir() -> Iterator[None]:
    """Silence zarr's warning about the lock folder while it lists the store's members."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f"Object at {re.escape(LOCK_DIR)} is not recognized")
        yield


def _me(kind: Literal["append", "extract"], command: str, blocks: Sequence[int] = ()) -> LockInfo:
    return LockInfo(kind, socket.gethostname(), os.getpid(), time.time(), command, tuple(blocks))


def state(info: LockInfo, path: Path | None = None) -> State:
    """Whether the process behind ``info`` is running, dead, or unknown (another host, fresh file)."""
    if info.host == socket.gethostname():
        try:
            created = psutil.Process(info.pid).create_time()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return "dead"
        # A pid reused by a process that started after the lock was written is not the writer.
        return "running" if created <= info.started + 1.0 else "dead"
    if path is not None:
        try:
            if time.time() - path.stat().st_mtime > STALE_AFTER_S:
                return "dead"
        except FileNotFoundError:
            return "dead"
    return "unknown"


def read_append_lock(store_path: str | Path) -> LockInfo | None:
    """The current append lock, or None."""
    return _read(lock_dir(store_path) / APPEND_LOCK)


def append_lock_path(store_path: str | Path) -> Path:
    return lock_dir(store_path) / APPEND_LOCK


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


def running_extractions(
    store_path: str | Path, *, exclude: Path | None = None
) -> list[tuple[Path, LockInfo]]:
    """Registered extractions that may still run; registrations of dead processes are removed."""
    out = []
    folder = lock_dir(store_path)
    for path in sorted(folder.glob("extract-*.json")) if folder.is_dir() else []:
        if exclude is not None and path == exclude:
            continue
        info = _read(path)
        if info is None:
            continue
        if state(info, path) == "dead":
            _remove(path)
            continue
        out.append((path, info))
    return out


@contextlib.contextmanager
def append_lock(store_path: str | Path, *, command: str = "append") -> Iterator[LockInfo]:
    """Hold the store's exclusive append lock; refuse while another append or an extraction runs.

    Raises
    ------
    StoreLockedError
        If the lock is held (by a running or a dead process) or an extraction is registered.
    """
    path = append_lock_path(store_path)
    me = _me("append", command)
    try:
        _write_new(path, me, exclusive=True)
    except FileExistsError:
        other = _read(path)
        if other is None:  # released in the meantime
            raise StoreLockedError(f"store {str(store_path)!r} was being appended to; try again") from None
        raise StoreLockedError(stale_lock_message(store_path, other, state(other))) from None
    try:
        running = running_extractions(store_path)
        if running:
            listed = "; ".join(info.describe() for _, info in running)
            raise StoreLockedError(
                f"cannot append to store {str(store_path)!r} while extractions run ({listed}); "
                "append when they have finished (their completion is shown by `sae-store status`)"
            )
        yield me
    finally:
        if _read(path) == me:
            _remove(path)


def release_append_lock(store_path: str | Path) -> None:
    """Remove the append lock (used by ``unlock`` after checking that its holder is gone)."""
    _remove(append_lock_path(store_path))


class _Heartbeat(threading.Thread):
    """Touches a registration file so that other hosts can tell a running extraction from a dead one."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True, name="sae-store-heartbeat")
        self.path = path
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(self.path)


@contextlib.contextmanager
def register_extraction(
    store_path: str | Path, blocks: Sequence[int], *, command: str = "extract"
) -> Iterator[LockInfo]:
    """Register a running extraction of shard ``blocks`` for as long as the context lasts.

    Raises
    ------
    StoreLockedError
        If an append holds the lock (running or stale), or an extraction that registered earlier
        works on some of the same blocks (two writers of one block waste the work of one).
    """
    me = _me("extract", command, blocks)
    path = lock_dir(store_path) / f"extract-{me.host}-{me.pid}-{uuid.uuid4().hex[:8]}.json"
    _write_new(path, me, exclusive=False)
    beat = _Heartbeat(path)
    try:
        held = read_append_lock(store_path)
        if held is not None:
            raise StoreLockedError(stale_lock_message(store_path, held, state(held)))
        mine = set(blocks)
        for other_path, other in running_extractions(store_path, exclude=path):
            shared = sorted(mine & set(other.blocks))
            if shared and (other.started, other_path.name) < (me.started, path.name):
                raise StoreLockedError(
                    f"shard blocks {shared[:8]}{' ...' if len(shared) > 8 else ''} of store "
                    f"{str(store_path)!r} are being extracted by {other.describe()}; give each task its "
                    "own range (--task-index/--task-count, or non-overlapping --samples)"
                )
        beat.start()
        yield me
    finally:
        beat.stopped.set()
        _remove(path)
