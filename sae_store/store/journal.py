"""The journal that makes ``append`` undoable: what it saves, how it is trusted, how it is removed.

The journal is crash-safe by construction:

- it is written in a scratch folder and renamed to ``append-journal`` in one atomic step once every
  file and its manifest (the sha256 of every saved file) are on disk, so a journal under that name
  is always whole;
- it is removed by renaming it to a scratch name first (atomic), then deleting that folder, so a
  process killed while deleting leaves only scratch, never a half-deleted journal;
- its files, the files a rollback restores and the folders whose entries a step renames, creates or
  removes are fsynced before the next step, so the journal and a rollback survive a power loss
  too, not only a killed process;
- a rollback checks every saved file against the manifest before restoring anything, and refuses
  (changing nothing) if one differs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import zarr

from sae_store.errors import StoreLockedError
from sae_store.faults import kill_point
from sae_store.store import schema as S
from sae_store.store.lock import ignoring_lock_dir, journal_path, lock_dir

_MANIFEST = "manifest.json"
_SCRATCH = ".append-journal."


def sample_arrays(path: Path) -> list[tuple[str, int, int, bool]]:
    """(name, sample axis, samples per file, small) of every root array with a sample dimension.

    Small arrays (no token or hidden dimension) are the ones whose boundary files an append may
    rewrite; activations and per-token arrays are only resized.
    """
    out = []
    with ignoring_lock_dir():
        for name, arr in zarr.open_group(str(path), mode="r", use_consolidated=False).arrays():
            dims = tuple(arr.metadata.dimension_names or ())  # type: ignore[union-attr]
            if S.SAMPLE in dims:
                axis = dims.index(S.SAMPLE)
                small = S.TOKEN not in dims and S.HIDDEN not in dims
                out.append((name, axis, (arr.shards or arr.chunks)[axis], small))
    return out


def _chunk_files(path: Path, name: str, axis: int, per_file: int, first_sample: int) -> list[Path]:
    """Files of array ``name`` holding samples from ``first_sample`` on (chunk keys ``c/i/j/...``)."""
    folder = path / name / "c"
    first = first_sample // per_file
    return [
        f
        for f in (folder.rglob("*") if folder.is_dir() else [])
        if f.is_file()
        and len(parts := f.relative_to(folder).parts) > axis
        and parts[axis].isdigit()
        and int(parts[axis]) >= first
    ]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make the names created, renamed or removed in folder ``path`` durable.

    Some file systems (and Windows) refuse to open or fsync a folder; there nothing more can be done,
    so the error is ignored, as is common practice.
    """
    with contextlib.suppress(OSError):
        _fsync(path)


def clear_scratch(path: Path) -> None:
    """Delete journals a killed process left half-written or half-deleted (never trusted)."""
    folder = lock_dir(path)
    for scratch in folder.glob(f"{_SCRATCH}*") if folder.is_dir() else []:
        shutil.rmtree(scratch, ignore_errors=True)


def write_journal(path: Path, n_before: int) -> None:
    """Save what an append changes: every ``zarr.json``, and the partly filled last chunk files of
    the small per-sample arrays (rewritten with new values beside the old ones)."""
    clear_scratch(path)
    scratch = lock_dir(path) / f"{_SCRATCH}{uuid.uuid4().hex}"
    saved = [path / "zarr.json", *path.glob("*/zarr.json")]
    for name, axis, per_file, small in sample_arrays(path):
        if small and n_before % per_file:
            saved += _chunk_files(path, name, axis, per_file, n_before)
    files = {}
    for f in saved:
        rel = str(f.relative_to(path))
        target = scratch / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
        _fsync(target)
        files[rel] = _sha256(target)
    manifest = scratch / _MANIFEST
    manifest.write_text(json.dumps({"n_samples": n_before, "files": files}))
    _fsync(manifest)
    for folder in [*(p for p in scratch.rglob("*") if p.is_dir()), scratch]:
        _fsync_dir(folder)  # the names of the saved files
    kill_point("append.journal_saved")
    os.rename(scratch, journal_path(path))  # the journal appears whole or not at all
    _fsync_dir(lock_dir(path))


def discard_journal(path: Path, operation: str) -> None:
    """Remove the journal: renamed away first, so it never exists half-deleted."""
    journal = journal_path(path)
    if journal.is_dir():
        os.rename(journal, lock_dir(path) / f"{_SCRATCH}{uuid.uuid4().hex}")
        _fsync_dir(lock_dir(path))
        kill_point(f"{operation}.journal_renamed")
    clear_scratch(path)


def _verified_manifest(path: Path, journal: Path) -> dict[str, object]:
    """The manifest, after checking every saved file against it; refuses if anything differs."""
    fix = (
        "nothing was changed. The store is partly appended; restore it from a backup or, if its "
        "files are intact, rerun `sae-store unlock` after restoring the journal folder"
    )
    try:
        manifest = json.loads((journal / _MANIFEST).read_text())
        files: dict[str, str] = manifest["files"]
        int(manifest["n_samples"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StoreLockedError(
            f"the append journal {str(journal)!r} has no readable manifest ({e}); {fix}"
        ) from e
    for rel, digest in files.items():
        saved = journal / rel
        if not saved.is_file() or _sha256(saved) != digest:
            raise StoreLockedError(
                f"the append journal's copy of {rel!r} ({str(saved)!r}) is missing or does not match its "
                f"checksum; {fix}"
            )
    return manifest


def _remove_empty_folders(folder: Path) -> None:
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(sub.iterdir()):
            sub.rmdir()
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def rollback(path: Path) -> int | None:
    """Undo an append: delete chunk files beyond the old size, restore the saved files, drop the journal.

    Returns the restored number of samples, or None when there was no journal (the store had not
    been touched). Every step can be repeated, so a rollback killed half-way is simply rerun.

    Raises
    ------
    StoreLockedError
        If a saved file does not match the manifest's checksum (nothing is changed then).
    """
    clear_scratch(path)
    journal = journal_path(path)
    if not journal.is_dir():
        return None
    manifest = _verified_manifest(path, journal)
    n_before = int(manifest["n_samples"])  # type: ignore[call-overload]
    for name, axis, per_file, _ in sample_arrays(path):
        removed = _chunk_files(path, name, axis, per_file, -(-n_before // per_file) * per_file)
        for f in removed:
            f.unlink()
        for folder in {f.parent for f in removed}:
            _fsync_dir(folder)  # before the journal goes: removed chunks must not come back
        if (path / name / "c").is_dir():
            _remove_empty_folders(path / name / "c")
    kill_point("unlock.chunks_removed")
    restored: set[Path] = set()
    for rel in manifest["files"]:  # type: ignore[attr-defined]
        target = path / rel
        tmp = target.with_name(f".{target.name}.restore")
        shutil.copy2(journal / rel, tmp)
        _fsync(tmp)
        os.replace(tmp, target)
        restored.add(target.parent)
    for folder in restored:
        _fsync_dir(folder)
    kill_point("unlock.files_restored")
    discard_journal(path, "unlock")
    return n_before
