"""The heartbeat of a running extraction: its claim files touched every :data:`HEARTBEAT_S` seconds.

Other hosts cannot check a process of this one; they take a claim whose file was not touched for
:data:`~sae_store.store.lock_files.STALE_AFTER_S` seconds for dead.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path

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

    def run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            for path in self.paths:
                with contextlib.suppress(OSError):
                    os.utime(path)  # NULL times: the server's clock on NFS
