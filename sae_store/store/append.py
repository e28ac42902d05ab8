"""Growing a store's sample dimension with new samples (``sae-store append``), safely.

Everything is validated before the store is touched. The change then runs under the exclusive
append lock, with a journal: the metadata files (every ``zarr.json``) are copied aside first, so a
failure at any step - or a killed process, repaired later by :func:`unlock_store` - restores the
old shape exactly. Readers that opened the store before keep their metadata and read the same old
values: new samples only add chunks, and a partial last chunk is rewritten atomically with its old
values kept. The consolidated metadata and the attributes switch to the new size last, in that
order, so a reader opening mid-way sees the old size or a consistent superset.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import zarr

from sae_store.errors import StoreLockedError
from sae_store.faults import kill_point
from sae_store.store import schema as S
from sae_store.store.blocks import Block
from sae_store.store.core import ActivationStore, open_store
from sae_store.store.create import write_sample_metadata
from sae_store.store.journal import clear_scratch, discard_journal, rollback, sample_arrays, write_journal
from sae_store.store.lock import (
    BlockTakenError,
    ClaimRecord,
    KeepLockedError,
    LockInfo,
    State,
    append_lock,
    append_lock_path,
    claim_blocks,
    claims,
    clear_claims,
    ignoring_lock_dir,
    journal_path,
    lock_dir,
    read_append_lock,
    release_append_lock,
    remove_dead_temporary_files,
    remove_lock,
    stale_lock_message,
    state,
    unreadable_locks,
)


class AppendResult(NamedTuple):
    """What :func:`grow_samples` changed."""

    n_before: int
    n_after: int
    added: list[str]
    """Sample ids added, in order."""
    blocks_to_extract: list[Block]
    """Shard blocks that now hold samples without activations (the old tail block included)."""


def grow_samples(
    path: str | Path,
    samples: pd.DataFrame,
    check: Callable[[ActivationStore], None],
    *,
    command: str = "append",
) -> AppendResult:
    """Add ``samples`` (rows of a samples table) at the end of the store's sample dimension.

    ``check`` refuses samples the store cannot take (it raises); it runs before anything is locked and
    again under the lock, against the store as it is then (another append may have finished meanwhile).
    :func:`sae_store.extract.append.append_samples` checks the table and its images with it.

    Raises
    ------
    StoreLockedError
        If another append holds the lock, or an extraction is running.
    """
    store = open_store(path)
    store.require_writable()
    check(store)
    with append_lock(store.path, command=command) as me:
        store = open_store(path)
        check(store)
        n_before = store.layout.n_samples
        n_after = n_before + len(samples)
        me = dataclasses.replace(me, blocks=tuple(range(-(-n_after // store.layout.samples_per_shard))))
        try:
            with claim_blocks(store.path, me):
                kill_point("append.claimed")
                _grow(store, samples, n_before, n_after)
        except BlockTakenError as e:
            if e.holder.kind != "extract":
                raise
            hint = "" if e.state == "running" else f"; {str(e).split('which may be stale: ', 1)[-1]}"
            raise StoreLockedError(
                f"cannot append to store {str(store.path)!r} while extractions run ({e.holder.describe()}); "
                f"append when they have finished (their completion is shown by `sae-store status`){hint}"
            ) from None
    new = open_store(path)
    first = n_before // new.layout.samples_per_shard
    return AppendResult(n_before, n_after, samples["sample_id"].astype(str).tolist(), new.blocks[first:])


def _grow(store: ActivationStore, samples: pd.DataFrame, n_before: int, n_after: int) -> None:
    """Resize, write the new samples' metadata, switch the size; roll back on any failure."""
    write_journal(store.path, n_before)
    kill_point("append.journal_written")
    try:
        group = zarr.open_group(str(store.path), mode="r+", use_consolidated=False)
        for name, axis, _, _ in sample_arrays(store.path):
            arr = group[name]
            arr.resize(tuple(n_after if i == axis else n for i, n in enumerate(arr.shape)))  # type: ignore[union-attr]
        kill_point("append.resized")
        write_sample_metadata(group, samples.reset_index(drop=True), store.layout.languages, n_before)
        kill_point("append.metadata_written")
        with ignoring_lock_dir():
            zarr.consolidate_metadata(str(store.path))
        kill_point("append.consolidated")
        root = zarr.open_group(str(store.path), mode="r+")
        root.update_attributes(
            S.encode_attrs({S.ATTR_KEY: {**store.attrs[S.ATTR_KEY], "n_samples": n_after}})
        )
        kill_point("append.attributes_written")
    except BaseException as e:
        try:
            rollback(store.path)
        except BaseException as r:
            raise KeepLockedError(
                f"appending to store {str(store.path)!r} failed ({type(e).__name__}: {e}) and rolling back "
                f"failed too ({r}); the store stays locked: fix the cause, then run `sae-store unlock "
                f"{store.path}`"
            ) from r
        raise
    discard_journal(store.path, "append")


@dataclasses.dataclass(frozen=True)
class UnlockResult:
    """What :func:`unlock_store` did: facts, as lines for people (:meth:`lines`) or JSON (:meth:`to_dict`)."""

    store: str
    rolled_back_to: int | None = None
    """The number of samples an interrupted append was rolled back to; None if nothing was rolled back."""
    append_lock: LockInfo | None = None
    """The holder of the append lock that was removed; None if the store had none."""
    append_lock_state: State | None = None
    """Whether that holder was ``"dead"`` or ``"unknown"`` (another host: removed with ``force``)."""
    claims: tuple[ClaimRecord, ...] = ()
    """The claims removed or kept: an append's first, then extractions'."""
    temporary_files: tuple[str, ...] = ()
    """Temporary lock files removed, left by processes that died creating a lock (e.g. on a full disk)."""
    unreadable: tuple[str, ...] = ()
    """Lock and claim files that could not be read, removed with ``force``."""

    @property
    def locked(self) -> bool:
        """Whether the store held anything to clear (or keep)."""
        return (
            self.append_lock is not None or bool(self.claims) or bool(self.temporary_files + self.unreadable)
        )

    def lines(self) -> list[str]:
        """What was done (or kept, and why), one line each, in the order it was done."""
        done = (
            []
            if self.rolled_back_to is None
            else [f"rolled back the interrupted append: the store has {self.rolled_back_to} samples again"]
        )
        done += [c.describe() for c in self.claims if c.holder.kind == "append"]
        if self.append_lock is not None:
            forced = "" if self.append_lock_state == "dead" else ", forced"
            done.append(f"removed the append lock of {self.append_lock.describe()}{forced}")
        done += [c.describe() for c in self.claims if c.holder.kind != "append"]
        done += [f"removed the unreadable lock file {f!r}, forced" for f in self.unreadable]
        done += [
            f"removed the temporary lock file {f!r}, left by a process that is gone"
            for f in self.temporary_files
        ]
        return done or ["the store was not locked"]

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-serialisable values."""
        lock = self.append_lock
        return {
            "store": self.store,
            "locked": self.locked,
            "rolled_back_to": self.rolled_back_to,
            "append_lock": None
            if lock is None
            else {
                "holder": lock.to_dict(),
                "state": self.append_lock_state,
                "forced": self.append_lock_state != "dead",
            },
            "claims": [c.to_dict() for c in self.claims],
            "temporary_files": list(self.temporary_files),
            "unreadable": list(self.unreadable),
        }


def unlock_store(path: str | Path, *, force: bool = False) -> UnlockResult:
    """Clear what killed processes left: roll back an interrupted append, remove stale locks and claims.

    Refuses an append lock whose process is running; a lock from another host (whose process cannot
    be checked) needs ``force``, and so do claims of extractions on another host whose heartbeat is
    fresh.

    Returns
    -------
    UnlockResult
        What was done (or kept, and why); ``.lines()`` gives it as lines for people.

    Raises
    ------
    StoreLockedError
        If an append is running, or its lock is of another host and ``force`` is not set.
    """
    store = open_store(path)
    lock = append_lock_path(store.path)
    unreadable = unreadable_locks(store.path)
    if unreadable and not force:
        names = ", ".join(repr(str(p)) for p in unreadable)
        raise StoreLockedError(
            f"lock file(s) {names} of store {str(store.path)!r} cannot be read (damaged, or written by a "
            f"process that died on a full disk); if no sae-store command is using this store, run "
            f"`sae-store unlock {store.path} --force` (it removes them and rolls back an unfinished append)"
        )
    info = None if lock in unreadable else read_append_lock(store.path)
    st: State | None = None
    n: int | None = None
    cleared: list[ClaimRecord] = []
    if info is not None:
        st = state(info, lock)
        if st == "running" or (st == "unknown" and not force):
            raise StoreLockedError(stale_lock_message(store.path, info, st))
    if info is not None or lock in unreadable or journal_path(store.path).is_dir():
        n = rollback(store.path)
        cleared += clear_claims(store.path, force=True, kinds=("append",))
    elif any(c.kind == "append" for _, c in claims(store.path)):
        cleared += clear_claims(store.path, force=force, kinds=("append",))
    for p in unreadable:
        remove_lock(p)
    if info is not None:
        release_append_lock(store.path)
    cleared += clear_claims(store.path, force=force)
    temporary = tuple(str(p) for p in remove_dead_temporary_files(store.path, force=force))
    clear_scratch(store.path)
    with contextlib.suppress(OSError):
        lock_dir(store.path).rmdir()
    return UnlockResult(str(store.path), n, info, st, tuple(cleared), temporary, tuple(map(str, unreadable)))
