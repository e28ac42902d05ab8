"""What the lock protocol tells people: why an append lock or a claim blocks them.

Each text names the holder (:meth:`LockInfo.describe`), whether it may still run, and the command
that clears it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sae_store.store.lock_files import STALE_AFTER_S, LockInfo, State, append_lock_path


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


def taken_message(
    store_path: str | Path, mine: Sequence[int], other: LockInfo, st: State, age: float | None
) -> str:
    """How to explain that ``other`` holds some of the blocks ``mine`` (its state, heartbeat ``age``)."""
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
