"""What the lock protocol tells people: why a lock or claim blocks them, and what ``unlock`` did.

Each text names the holder (:meth:`LockInfo.describe`), whether it may still run, and the command
that clears it. :class:`ClaimRecord` is what :func:`sae_store.store.lock.clear_claims` returns: the
facts, rendered to a line by :meth:`ClaimRecord.describe` and to JSON by :meth:`ClaimRecord.to_dict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sae_store.store.lock_files import STALE_AFTER_S, LockInfo, State, append_lock_path, journal_path

#: The command that takes its lock like an append but is finished by running it again.
MIGRATE = "migrate"


def stale_lock_message(store_path: str | Path, info: LockInfo, st: State) -> str:
    """How to explain an append lock that blocks the caller."""
    lock = append_lock_path(store_path)
    what = "a migration" if info.command == MIGRATE else "an append"
    if st == "running":
        return f"{what} is running on store {str(store_path)!r}: {info.describe()}; wait for it to finish"
    if info.command == MIGRATE and st == "dead":
        return (
            f"store {str(store_path)!r} has the lock {str(lock)!r} of a migration by {info.describe()}, "
            f"which is no longer running; run `sae-store migrate {store_path}` to finish it"
        )
    why = "which is no longer running" if st == "dead" else "on another host, whose state cannot be checked"
    return (
        f"store {str(store_path)!r} has a stale append lock {str(lock)!r} left by {info.describe()}, {why}; "
        f"the append may have stopped half-way. If no sae-store command is using this store, run "
        f"`sae-store unlock {store_path}`{'' if st == 'dead' else ' --force'} (it restores the store's "
        "previous shape if needed and removes the lock)"
    )


def journal_message(store_path: str | Path) -> str:
    """How to explain an append journal left without its lock: an append stopped half-way."""
    return (
        f"store {str(store_path)!r} has an unfinished append (its journal {str(journal_path(store_path))!r} "
        f"is still there); if no sae-store command is using this store, run `sae-store unlock {store_path}` "
        "(it restores the store's previous shape and removes the journal)"
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


@dataclass(frozen=True)
class ClaimRecord:
    """One task's claims that :func:`~sae_store.store.lock.clear_claims` removed or kept, and why.

    The reason follows from ``action`` and ``state``: a running holder is kept; one whose state is
    unknown (another host, fresh heartbeat) is kept, or removed when forced; a dead one is removed.
    """

    action: Literal["removed", "kept", "held"]
    """What ``unlock`` did with the claims, or ``"held"`` where they were only listed (``status``)."""
    store: str
    """The store the claims belong to."""
    blocks: tuple[int, ...]
    """The shard blocks the holder's claim files name, in increasing order."""
    holder: LockInfo
    state: State
    heartbeat_age: float | None
    """Seconds since the holder's heartbeat touched its claim, None if the file is not visible."""
    remote: bool
    """Whether the holder is on another host (its heartbeat then tells whether it lives)."""

    @property
    def reason(self) -> str:
        """Why the claims were removed or kept, as the end of :meth:`describe`'s line."""
        if self.action == "held":
            if self.state == "running":
                return "running"
            if self.state == "dead":
                return f"no longer running: `sae-store unlock {self.store}` clears it"
            return (
                f"on another host, taken for dead after {STALE_AFTER_S:.0f} s without a heartbeat; if it is "
                f"not running, `sae-store unlock {self.store} --force` clears it"
            )
        if self.action == "kept":
            if self.state == "running":
                return "it is running"
            return f"its host cannot be checked: `sae-store unlock {self.store} --force`"
        return "which is no longer running" if self.state == "dead" else "forced"

    def describe(self) -> str:
        """The line for people, e.g. ``removed the claim of shard blocks [1] by pid ..., forced``."""
        what = f"the claim of shard blocks {list(self.blocks)} by {self.holder.describe()}"
        if self.heartbeat_age is not None and (self.remote or self.action == "held"):
            what += f" (last heartbeat {self.heartbeat_age:.0f} s ago)"
        if self.action == "held":  # e.g. "shard blocks [1] by pid ... (last heartbeat 3 s ago): running"
            return f"{what.removeprefix('the claim of ')}: {self.reason}"
        return f"kept {what}: {self.reason}" if self.action == "kept" else f"removed {what}, {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-serialisable values (lists for tuples), with its ``reason``."""
        return {
            "action": self.action,
            "store": self.store,
            "blocks": list(self.blocks),
            "holder": self.holder.to_dict(),
            "state": self.state,
            "heartbeat_age": self.heartbeat_age,
            "remote": self.remote,
            "reason": self.reason,
        }
