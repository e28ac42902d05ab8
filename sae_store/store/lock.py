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

The protocol is documented in ``docs/store-schema.md`` ("Locks and appends"). The files it decides
on are handled in :mod:`~sae_store.store.lock_files`, its texts are in
:mod:`~sae_store.store.lock_messages` and the heartbeat in :mod:`~sae_store.store.heartbeat`; their
public names are importable from here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from sae_store.errors import StoreLockedError
from sae_store.store.heartbeat import HEARTBEAT_S, Heartbeat
from sae_store.store.lock_files import (
    APPEND_LOCK,
    LOCK_DIR,
    STALE_AFTER_S,
    Kind,
    LockInfo,
    State,
    append_lock_path,
    claim_path,
    create_lock,
    heartbeat_age,
    ignoring_lock_dir,
    journal_path,
    lock_dir,
    new_lock_info,
    read_lock,
    remove_if_owned,
    remove_lock,
    slurm_job,
    state,
    temporary_file_dead,
    temporary_files,
)
from sae_store.store.lock_messages import (
    ClaimRecord,
    journal_message,
    stale_lock_message,
    taken_message,
)

__all__ = [
    "APPEND_LOCK",
    "HEARTBEAT_S",
    "LOCK_DIR",
    "STALE_AFTER_S",
    "VISIBLE_WAIT_S",
    "BlockTakenError",
    "ClaimRecord",
    "KeepLockedError",
    "Kind",
    "LockInfo",
    "State",
    "append_lock",
    "append_lock_path",
    "claim_blocks",
    "claim_path",
    "claims",
    "clear_claims",
    "heartbeat_age",
    "held_claims",
    "ignoring_lock_dir",
    "interruption",
    "journal_path",
    "lock_dir",
    "new_lock_info",
    "read_append_lock",
    "register_extraction",
    "release_append_lock",
    "release_dead_claims",
    "remove_dead_temporary_files",
    "remove_lock",
    "require_unlocked",
    "slurm_job",
    "stale_lock_message",
    "state",
    "unreadable_locks",
]

#: How long a claim that exists but cannot be read yet is waited for before giving up.
VISIBLE_WAIT_S = 10.0


class BlockTakenError(StoreLockedError):
    """A shard block is claimed by another task (``holder``); its ``state`` and heartbeat ``age``."""

    def __init__(self, message: str, holder: LockInfo, state: State, age: float | None) -> None:
        super().__init__(message)
        self.holder, self.state, self.age = holder, state, age


class KeepLockedError(StoreLockedError):
    """The store was left half-changed: the lock and claims stay until ``sae-store unlock``."""


def read_append_lock(store_path: str | Path) -> LockInfo | None:
    """The current append lock, or None."""
    return read_lock(append_lock_path(store_path))


def interruption(store_path: str | Path) -> str | None:
    """Why the store must not be changed now - an append running, or one left unfinished - or None.

    An append lock (whoever holds it, running or dead) or an append journal means the store may be
    half-changed; the message names the holder and the command that finishes or undoes it.
    """
    path = append_lock_path(store_path)
    try:
        info = read_lock(path)
    except StoreLockedError as e:
        return str(e)
    if info is not None:
        return stale_lock_message(store_path, info, state(info, path))
    if journal_path(store_path).is_dir():
        return journal_message(store_path)
    return None


def require_unlocked(store_path: str | Path) -> None:
    """Refuse to change a store while an append runs or was left unfinished (see :func:`interruption`).

    Raises
    ------
    StoreLockedError
        With the message of :func:`interruption`.
    """
    why = interruption(store_path)
    if why is not None:
        raise StoreLockedError(why)


def _take_over(path: Path, other: LockInfo, me: LockInfo) -> bool:
    """Replace the dead ``other``'s claim at ``path`` by ``me``'s; False if someone else got there first.

    Only the process that creates the takeover marker of ``other``'s token may remove that claim,
    so two processes finding the same dead claim cannot remove each other's fresh ones.
    """
    marker = path.with_name(f"{path.name}.takeover-{other.token or other.pid}")
    created, now = create_lock(marker, me)
    if not created:
        holder = read_lock(marker)
        if holder is None or state(holder, marker, now) != "dead":
            return False
        remove_lock(marker)
        created, _ = create_lock(marker, me)
        if not created:
            return False
    try:
        current = read_lock(path)
        if current is None or current.token != other.token:
            return False
        path.unlink(missing_ok=True)
        return create_lock(path, me)[0]
    finally:
        remove_lock(marker)


def _claim(store_path: str | Path, block: int, me: LockInfo) -> Path:
    path = claim_path(store_path, block)
    deadline = time.monotonic() + VISIBLE_WAIT_S
    pause = 0.05
    while True:
        created, now = create_lock(path, me)
        if created:
            return path
        other = read_lock(path)
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
        raise BlockTakenError(taken_message(store_path, me.blocks, other, st, age), other, st, age)


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
            remove_if_owned(path, me.token)


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
    created, now = create_lock(path, me)
    if not created:
        other = read_lock(path)
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
            remove_if_owned(path, me.token)


def _readable(path: Path) -> LockInfo | None:
    try:
        return read_lock(path)
    except StoreLockedError:  # damaged: :func:`unreadable_locks` lists it
        return None


def claims(store_path: str | Path) -> list[tuple[Path, LockInfo]]:
    """Every readable claim file of the store with its content."""
    folder = lock_dir(store_path)
    found = [(p, _readable(p)) for p in sorted(folder.glob("block-*.claim"))] if folder.is_dir() else []
    return [(p, info) for p, info in found if info is not None]


def unreadable_locks(store_path: str | Path) -> list[Path]:
    """The store's append lock and claim files that exist but cannot be read."""
    folder = lock_dir(store_path)
    files = [append_lock_path(store_path), *sorted(folder.glob("block-*.claim"))] if folder.is_dir() else []
    return [p for p in files if p.is_file() and _readable(p) is None]


def _by_task(store_path: str | Path, kinds: Sequence[Kind]) -> list[tuple[ClaimRecord, list[Path]]]:
    """The claims of ``kinds`` grouped by the task holding them (``"held"`` records), with their files."""
    by_task: dict[str, list[tuple[Path, LockInfo]]] = {}
    for path, info in claims(store_path):
        if info.kind in kinds:
            by_task.setdefault(info.token, []).append((path, info))
    out = []
    for held in by_task.values():
        path, info = held[0]
        record = ClaimRecord(
            action="held",
            store=str(store_path),
            blocks=tuple(sorted(int(p.stem.removeprefix("block-")) for p, _ in held)),
            holder=info,
            state=state(info, path),
            heartbeat_age=heartbeat_age(path),
            remote=info.host != socket.gethostname(),
        )
        out.append((record, [p for p, _ in held]))
    return out


def held_claims(store_path: str | Path) -> list[ClaimRecord]:
    """Every task's claims, extractions' and appends', with its state and heartbeat age (``status``)."""
    return [record for record, _ in _by_task(store_path, ("append", "extract"))]


def clear_claims(
    store_path: str | Path, *, force: bool = False, kinds: Sequence[Kind] = ("extract",)
) -> list[ClaimRecord]:
    """Remove the claims of dead tasks (and with ``force`` of other hosts' tasks); say what was done.

    Claims of a task still running on this host are never removed; ones of another host whose
    heartbeat is fresh are kept unless ``force``, their record saying how to clear them.

    Returns
    -------
    list of ClaimRecord
        One per task holding claims of one of ``kinds``, in the order of its first claim file;
        :meth:`ClaimRecord.describe` gives the line for people.
    """
    records = []
    for held, paths in _by_task(store_path, kinds):
        keep = held.state == "running" or (held.state == "unknown" and not force)
        records.append(dataclasses.replace(held, action="kept" if keep else "removed"))
        if not keep:
            for p in paths:
                remove_lock(p)
    return records


def release_dead_claims(store_path: str | Path, blocks: Sequence[int], *, command: str = "extract") -> int:
    """Remove the claims of dead extractions on ``blocks`` (e.g. blocks a killed task finished before it
    died, which its resumed run skips); returns how many. Each is taken over first, so a claim that
    another process takes over at the same moment is left to it."""
    me = new_lock_info("extract", command, blocks)
    removed = 0
    for block in blocks:
        path = claim_path(store_path, block)
        other = _readable(path)
        if other is None or other.kind != "extract" or state(other, path) != "dead":
            continue
        if _take_over(path, other, me):
            remove_if_owned(path, me.token)
            removed += 1
    return removed


def remove_dead_temporary_files(store_path: str | Path, *, force: bool = False) -> list[Path]:
    """Remove the temporary files of lock creations whose process is gone; returns them."""
    removed = [p for p in temporary_files(store_path) if temporary_file_dead(p, force=force)]
    for p in removed:
        remove_lock(p)
    return removed


def release_append_lock(store_path: str | Path) -> None:
    """Remove the append lock (used by ``unlock`` after checking that its holder is gone)."""
    remove_lock(append_lock_path(store_path))


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
        beat = Heartbeat(paths)
        beat.start()
        try:
            yield me
        finally:
            beat.stopped.set()
