"""Thin wrappers over the SLURM client commands (sbatch, squeue, scancel)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from sae_store.errors import SaeStoreError


class SlurmError(SaeStoreError):
    """A SLURM client command is missing or failed."""


class QueueEntry(NamedTuple):
    """One job or array task as squeue shows it."""

    job_id: int
    """The array job id (or the job id of a single job)."""
    task: int | None
    """The array task id, None for a single job."""
    state: str
    """PENDING, RUNNING, COMPLETING, ..."""
    reason: str
    """Why it waits (Dependency, Resources, ...), ``None`` when running."""


def require(tool: str) -> str:
    """The path of SLURM client ``tool``, or a SlurmError saying where to run instead."""
    path = shutil.which(tool)
    if path is None:
        raise SlurmError(
            f"`{tool}` is not on PATH: SLURM commands must run on a cluster login node (load the SLURM "
            "module first if your site has one, e.g. `module load slurm`). Without SLURM, "
            "`sae-store jobs render --config C` writes the scripts and `sae-store pipeline --config C` "
            "runs the same steps here"
        )
    return path


def _call(argv: list[str], *, empty_if: str = "") -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as e:
        raise SlurmError(f"`{' '.join(argv)}` did not answer in 120 s; is the SLURM controller up?") from e
    if out.returncode and empty_if and empty_if in out.stderr:
        return ""
    if out.returncode:
        said = " | ".join(out.stderr.strip().splitlines())
        raise SlurmError(f"`{' '.join(argv)}` failed (exit {out.returncode}): {said}")
    return out.stdout


def sbatch(script: Path, *, after_ok: Iterable[int] = ()) -> int:
    """Submit ``script`` and return its job id (the array job id for an array).

    ``after_ok`` job ids become ``--dependency=afterok:...``; the scripts themselves carry
    ``--kill-on-invalid-dep=yes`` so a failed dependency cancels the job instead of leaving it pending.
    """
    argv = [require("sbatch"), "--parsable"]
    deps = [str(i) for i in after_ok]
    if deps:
        argv.append("--dependency=afterok:" + ":".join(deps))
    out = _call([*argv, str(script)]).strip()
    try:
        return int(out.split(";")[0])
    except ValueError:
        raise SlurmError(f"sbatch printed {out!r} instead of a job id for {str(script)!r}") from None


def squeue(job_ids: Iterable[int]) -> list[QueueEntry]:
    """Queued and running jobs and array tasks among ``job_ids`` (one entry per array task)."""
    ids = sorted(set(job_ids))
    if not ids:
        return []
    # jobs that ended more than MinJobAge ago are forgotten: squeue then calls every id invalid
    argv = [require("squeue"), "-h", "-r", "-j", ",".join(map(str, ids)), "-o", "%F|%K|%T|%r"]
    out = _call(argv, empty_if="Invalid job id")
    entries = []
    for line in out.splitlines():
        job, task, state, reason = line.split("|", 3)
        entries.append(QueueEntry(int(job), int(task) if task.isdigit() else None, state, reason))
    return entries


def scancel(job_ids: Iterable[int]) -> None:
    """Cancel ``job_ids`` (whole arrays)."""
    ids = [str(i) for i in sorted(set(job_ids))]
    if ids:
        _call([require("scancel"), *ids])
