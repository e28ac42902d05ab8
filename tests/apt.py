"""apt-get as the tests' fixtures run it to install Debian packages (Chromium, SLURM, munge).

Other jobs on a shared machine may hold apt's locks (an install, an unattended upgrade): apt-get then
waits for them, up to :data:`LOCK_WAIT_S`, instead of failing at once; the time limits of the runs
leave room for that wait.
"""

from __future__ import annotations

import os

#: Seconds apt-get waits for a lock held by another apt or dpkg run before it gives up.
LOCK_WAIT_S = 600
#: The command, waiting for apt's and dpkg's locks.
APT_GET = ("apt-get", "-o", f"DPkg::Lock::Timeout={LOCK_WAIT_S}")
#: No questions asked by package scripts.
ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def commands(*packages: str, recommends: bool = True) -> list[list[str]]:
    """The two runs that install ``packages`` (and, unless ``recommends`` is false, the packages they
    recommend): refresh the package lists, then install; each may take :data:`LOCK_WAIT_S` plus its
    own work."""
    extras = [] if recommends else ["--no-install-recommends"]
    return [[*APT_GET, "update", "-qq"], [*APT_GET, "install", "-y", "-qq", *extras, *packages]]
