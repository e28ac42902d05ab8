"""The files of the lock protocol: where they are, what they hold, and creating them atomically.

A lock or claim file is created in one step that the file server decides (``link`` fails on an
existing name), read back as a :class:`LockInfo`, and removed with its folder when that empties.
:func:`state` tells whether the process behind one is running. The protocol built on these files
is in :mod:`sae_store.store.lock`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import socket
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import psutil

from sae_store import faults
from sae_store.errors import StoreLockedError

LOCK_DIR = ".sae-store-locks"
APPEND_LOCK = "append.lock"
#: The folder (in :data:`LOCK_DIR`) saving what an append changes until it finished or was rolled back.
JOURNAL = "append-journal"
#: A claim from another host whose heartbeat is older than this is considered dead.
STALE_AFTER_S = 600.0

State = Literal["running", "dead", "unknown"]
Kind = Literal["append", "extract"]


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

    def to_dict(self) -> dict[str, Any]:
        """The content as JSON-serialisable values (as written to the file)."""
        return {**asdict(self), "blocks": list(self.blocks)}


def lock_dir(store_path: str | Path) -> Path:
    """The folder holding a store's lock and claim files."""
    return Path(store_path) / LOCK_DIR


def append_lock_path(store_path: str | Path) -> Path:
    """The store's append lock file."""
    return lock_dir(store_path) / APPEND_LOCK


def journal_path(store_path: str | Path) -> Path:
    """The store's append journal (:mod:`sae_store.store.journal`), there while an append is unfinished."""
    return lock_dir(store_path) / JOURNAL


def claim_path(store_path: str | Path, block: int) -> Path:
    """The claim file of shard block ``block`` (its index, ``start // samples_per_shard``)."""
    return lock_dir(store_path) / f"block-{block}.claim"


@contextlib.contextmanager
def ignoring_lock_dir() -> Iterator[None]:
    """Silence zarr's warning about the lock folder while it lists the store's members."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f"Object at {re.escape(LOCK_DIR)} is not recognized")
        yield


def slurm_job() -> str:
    """``<job id>_<array task id>`` of this SLURM task (``<job id>`` outside arrays; ``.<rank>`` added for
    ranks of a multi-task step), "" outside SLURM. A requeued task keeps it."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID", "")
    task = os.environ.get("SLURM_ARRAY_TASK_ID", "")
    rank = os.environ.get("SLURM_PROCID", "0")
    if not job:
        return ""
    return (f"{job}_{task}" if task else job) + (f".{rank}" if rank != "0" else "")


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


def lookup(path: Path) -> os.stat_result | None:
    """``stat`` of ``path``, or None if it is absent - or hidden by :data:`sae_store.faults.slow_fs`."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    slow = faults.slow_fs
    if slow is not None and slow.hides(path, st):
        return None
    return st


def read_lock(path: Path) -> LockInfo | None:
    """The file's content, or None if it is absent (or not visible here yet).

    Raises
    ------
    StoreLockedError
        If the file exists but cannot be read or parsed.
    """
    if lookup(path) is None:
        return None
    try:
        data = json.loads(path.read_text())
        data["blocks"] = tuple(data.get("blocks", ()))
        return LockInfo(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as e:
        store = path.parent.parent
        raise StoreLockedError(
            f"lock file {str(path)!r} is unreadable ({e}); if no sae-store command is using the store, "
            f"run `sae-store unlock {store} --force` (it removes it and rolls back an unfinished append)"
        ) from e


def create_lock(path: Path, info: LockInfo) -> tuple[bool, float]:
    """Create ``path`` holding ``info`` if it does not exist, in one atomic step.

    Returns whether it was created, and the file system's clock (the mtime of the temporary file
    written first), against which other files' heartbeats are compared.
    """
    for _ in range(10):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{info.host}.{info.pid}.{uuid.uuid4().hex}")
        try:
            try:
                with open(tmp, "x") as f:
                    f.write(json.dumps(info.to_dict()))
            except FileNotFoundError:  # another process removed the folder as it became empty
                continue
            except OSError as e:  # e.g. a full disk: name the file (the write's own error has no name)
                tmp.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    path.parent.rmdir()  # the lock folder, if this left it empty
                raise type(e)(e.errno, e.strerror, str(tmp)) from e
            now = tmp.stat().st_mtime
            try:
                os.link(tmp, path)  # atomic on the server, and fails if ``path`` exists
            except FileExistsError:
                return False, now
            except OSError:
                # NFS may report an error for a retransmitted link that did succeed: count the links.
                if tmp.stat().st_nlink != 2:
                    raise
            if faults.slow_fs is not None:
                faults.slow_fs.created(path)
            return True, now
        finally:
            tmp.unlink(missing_ok=True)  # also after a failed write: no temporary file stays behind
    raise StoreLockedError(f"could not create {str(path)!r}: its folder keeps disappearing")


def temporary_files(store_path: str | Path) -> list[Path]:
    """Temporary files of :func:`create_lock` in the lock folder (``.<lock name>.<host>.<pid>.<hex>``)."""
    folder = lock_dir(store_path)
    names = (f".{APPEND_LOCK}.", ".block-")
    return sorted(p for p in folder.iterdir() if p.name.startswith(names)) if folder.is_dir() else []


def temporary_file_dead(path: Path, *, force: bool = False) -> bool:
    """Whether the process that wrote temporary file ``path`` is gone (it lives for a moment only).

    Of this host the pid in its name is checked; of another host (or a name that does not parse) a
    file older than :data:`STALE_AFTER_S` is taken as left behind, any file with ``force``.
    """
    head, _, pid = path.name.rpartition(".")[0].rpartition(".")  # ".append.lock.<host>", "<pid>"
    host = head[1:].split(".", 2)[-1]  # lock names hold one dot: "append.lock", "block-3.claim"
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return False
    if host == socket.gethostname() and pid.isdigit():
        try:
            return psutil.Process(int(pid)).create_time() > mtime + 1.0  # a reused pid
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return True
    return force or time.time() - mtime > STALE_AFTER_S


def remove_lock(path: Path) -> None:
    """Remove ``path``, and its folder if that is left empty."""
    path.unlink(missing_ok=True)
    if faults.slow_fs is not None:
        faults.slow_fs.removed(path)
    # No empty folder is left behind: zarr warns about every non-zarr entry when it lists the store.
    with contextlib.suppress(OSError):
        path.parent.rmdir()


def remove_if_owned(path: Path, token: str) -> None:
    """Remove ``path`` if it still belongs to the task with ``token``."""
    with contextlib.suppress(StoreLockedError):
        info = read_lock(path)
        if info is not None and info.token == token:
            remove_lock(path)


def heartbeat_age(path: Path, now: float | None = None) -> float | None:
    """Seconds since ``path`` was last touched (``now`` from the file system's clock), None if unseen."""
    st = lookup(path)
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
