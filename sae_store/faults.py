"""Named kill points for fault-injection tests.

Code that changes a store on disk calls :func:`kill_point` between its steps. Normally this does
nothing; when the environment variable ``SAE_STORE_KILL_POINT`` names the point (``name`` or
``name@N`` for the N-th time it is reached, counting from 1), the process SIGKILLs itself there,
exactly like an out-of-memory kill or a node failure would. The tests kill at every point listed in
:data:`KILL_POINTS`, run the recovery command and compare the store with a reference.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

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
