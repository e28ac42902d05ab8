"""Rebuilding one array of a store beside it and swapping it in, so that a kill at any point loses nothing.

The new array is built in a work folder (``<name>.new``), marked whole (``<name>.ready``), then swapped
in by two renames (the old one aside to ``<name>.old``, the new one into place); ``<name>.done``
records that the array is finished. Run again after a kill, :func:`swap_in` resumes from whichever
step was reached: until the swap the old array is in place, after it the new one. ``sae-store
migrate`` rebuilds arrays this way (:mod:`sae_store.store.migrate`, :mod:`sae_store.store.checksums`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import zarr

from sae_store.faults import kill_point


def swap_in(store_path: Path, work: Path, key: str, build: Callable[[Path], None]) -> None:
    """Rebuild array ``key`` (a path in the store) with ``build(folder)`` in ``work`` and swap it in."""
    name = key.replace("/", "--")
    target, new, old = store_path / key, work / f"{name}.new", work / f"{name}.old"
    ready, done = work / f"{name}.ready", work / f"{name}.done"
    if done.exists():
        return
    if not ready.exists():
        shutil.rmtree(new, ignore_errors=True)  # a killed build: start it again
        build(new)
        ready.touch()
        kill_point("migrate.built")
    if new.exists():
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            kill_point("migrate.moved_aside")
        new.rename(target)
        kill_point("migrate.swapped")
    shutil.rmtree(old, ignore_errors=True)
    zarr.consolidate_metadata(str(store_path))  # readers see the new chunk layout at once
    done.touch()
    ready.unlink()
    kill_point("migrate.array_done")
