"""Fault injection for tests: named kill points, and a file system that shows new files late.

Code that changes a store on disk calls :func:`kill_point` between its steps. Normally this does
nothing; when the environment variable ``SAE_STORE_KILL_POINT`` names the point (``name`` or
``name@N`` for the N-th time it is reached, counting from 1), the process SIGKILLs itself there,
exactly like an out-of-memory kill or a node failure would. The tests kill at every point listed in
:data:`KILL_POINTS`, run the recovery command and compare the store with a reference.

The lock protocol (:mod:`sae_store.store.lock_files`) consults :data:`slow_fs` on its lookups: None
unless ``SAE_STORE_FS_DELAY`` was set when this module was imported, so a normal run pays one
attribute read per lookup and never reads the environment there.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

#: Environment variable that selects the kill point.
ENV_VAR = "SAE_STORE_KILL_POINT"

#: Every named kill point in the code, ``"<operation>.<step>"``; tests iterate over this.
KILL_POINTS: tuple[str, ...] = (
    # sae-store append (store/append.py, store/journal.py); recovery: sae-store unlock
    "append.claimed",
    "append.journal_saved",
    "append.journal_written",
    "append.resized",
    "append.metadata_written",
    "append.consolidated",
    "append.attributes_written",
    "append.journal_renamed",
    # sae-store unlock rolling an append back (store/journal.py); recovery: unlock again
    "unlock.chunks_removed",
    "unlock.files_restored",
    "unlock.journal_renamed",
    # the extraction's block writer (extract/writer.py); recovery: extract again
    "extract.activations_written",
    "extract.metadata_written",
    "extract.statistics_written",
    "extract.flags_written",
    # sae-store encode (train/encode.py); recovery: encode again
    "encode.features_written",
    "encode.flags_written",
    # re-consolidating the root metadata (store/core.py), as encode does; recovery: rerun the command
    "consolidate.locked",
    # sae_store.store.migrate: per array (built aside, old moved aside, new swapped in, done) ...
    "migrate.built",
    "migrate.moved_aside",
    "migrate.swapped",
    "migrate.array_done",
    # ... then the root attributes, the consolidated metadata and the version switch
    "migrate.attributes",
    "migrate.consolidated",
    "migrate.version",
)

_reached: Counter[str] = Counter()


def kill_point(name: str) -> None:
    """SIGKILL the current process here if ``SAE_STORE_KILL_POINT`` selects ``name``."""
    wanted = os.environ.get(ENV_VAR)
    if not wanted:
        return
    target, _, nth = wanted.partition("@")
    if target != name:
        return
    _reached[name] += 1
    if _reached[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def kill_points(operation: str) -> tuple[str, ...]:
    """The kill points of one operation (``"append"`` gives ``"append.*"``), in the order listed."""
    return tuple(p for p in KILL_POINTS if p.partition(".")[0] == operation)


#: Environment variable that turns on :class:`SlowFileSystem` for the whole process (seconds).
FS_DELAY_ENV = "SAE_STORE_FS_DELAY"


class SlowFileSystem:
    """Files of other processes younger than ``delay`` seconds are invisible to the lock's lookups.

    This is what another node sees on NFS, Lustre or GPFS while its attribute and directory caches
    are stale; exclusive creation still fails on an existing name (the server decides it).
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay
        # Files this process created: visible to it at once, whatever the delay.
        self._created_here: set[Path] = set()

    def created(self, path: Path) -> None:
        """Record that this process created ``path`` (it sees its own files at once)."""
        self._created_here.add(path)

    def removed(self, path: Path) -> None:
        """Record that this process removed ``path``."""
        self._created_here.discard(path)

    def hides(self, path: Path, st: os.stat_result) -> bool:
        """Whether a lookup of ``path`` (whose ``stat`` is ``st``) would miss it on a slow file system."""
        return path not in self._created_here and time.time() - st.st_ctime < self.delay


def _slow_fs_from_env() -> SlowFileSystem | None:
    value = os.environ.get(FS_DELAY_ENV) or "0"
    try:
        delay = float(value)
    except ValueError:
        raise ValueError(
            f"{FS_DELAY_ENV} must be a number of seconds (a fault injection for tests), got {value!r}; "
            "unset it"
        ) from None
    return SlowFileSystem(delay) if delay > 0 else None


#: The simulated slow file system, or None (always outside tests). Read once, at import: tests set
#: :data:`FS_DELAY_ENV` in the environment of the processes they start, or replace this attribute.
slow_fs: SlowFileSystem | None = _slow_fs_from_env()
