"""The heartbeat of a running extraction: its claim files touched every :data:`HEARTBEAT_S` seconds.

Other hosts cannot check a process of this one; they take a claim whose file was not touched for
:data:`~sae_store.store.lock_files.STALE_AFTER_S` seconds for dead. A heartbeat that cannot touch a
file says so once, in the log: the extraction goes on, but others may soon take its blocks over.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from sae_store.store.lock_files import STALE_AFTER_S

log = logging.getLogger(__name__)

#: Seconds between two touches of the claim files (read at every beat, so tests may change it).
HEARTBEAT_S = 30.0


class Heartbeat(threading.Thread):
    """Touches claim files so that other hosts can tell a running extraction from a dead one.

    Parameters
    ----------
    paths
        The claim files to touch.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        super().__init__(daemon=True, name="sae-store-heartbeat")
        self.paths = list(paths)
        self.stopped = threading.Event()
        # Kinds of error (exception type and errno) already logged: each is reported once.
        self._reported: set[tuple[type[OSError], int | None]] = set()

    def run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            for path in self.paths:
                try:
                    os.utime(path)  # NULL times: the server's clock on NFS
                except OSError as e:
                    self._report(path, e)

    def _report(self, path: Path, error: OSError) -> None:
        kind = (type(error), error.errno)
        if kind in self._reported:
            return
        self._reported.add(kind)
        log.warning(
            "the heartbeat could not touch claim file %r (%s); other hosts take this extraction for dead "
            "after %.0f s without one and may take its shard blocks over. Further errors of this kind "
            "are not logged",
            str(path),
            error,
            STALE_AFTER_S,
        )
