"""Submitting the pipeline to SLURM as one chain of jobs, and the manifest that records it.

Each step is one sbatch job (an array for array steps) that depends with ``afterok`` on the real
jobs of the steps it reads, never on a launcher. Steps (and array tasks) whose outputs are complete
are not submitted, so submitting again after a failure resumes the run. Job ids go to
``RUN/pipeline_status/<step>.jobid`` and ``RUN/pipeline_status/manifest.json``.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from sae_store.errors import SaeStoreError
from sae_store.jobs import slurm
from sae_store.jobs.config import PipelineConfig
from sae_store.jobs.plan import StepPlan, plan
from sae_store.jobs.preflight import check_ready
from sae_store.jobs.render import LOG_DIR, SCRIPT_DIR, STATUS_DIR, log_pattern, render_script
from sae_store.jobs.steps import ancestors

MANIFEST = "manifest.json"


@dataclass
class SubmittedStep:
    """One step of a submission."""

    name: str
    state: Literal["submitted", "complete"]
    """``complete``: its outputs were complete, nothing was submitted."""
    job_id: int | None = None
    """The job id (array job id for arrays)."""
    array: bool = False
    tasks: list[int] = field(default_factory=list)
    """Array task ids submitted (``[0]`` for a single job)."""
    n_tasks: int = 1
    depends_on: list[int] = field(default_factory=list)
    """Job ids of the ``afterok`` dependency."""
    script: str = ""
    log: str = ""
    """The ``--output`` pattern."""


@dataclass
class Manifest:
    """What was submitted for a run, written to ``RUN/pipeline_status/manifest.json``."""

    run: str
    submitted_at: str
    steps: list[SubmittedStep]
    config_file: str = ""
    cancelled_at: str = ""
    """When ``sae-store jobs cancel`` cancelled the run's jobs ('' if it did not)."""

    @property
    def job_ids(self) -> list[int]:
        return [s.job_id for s in self.steps if s.job_id is not None]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        return cls(**{**data, "steps": [SubmittedStep(**s) for s in data["steps"]]})


def status_dir(cfg: PipelineConfig) -> Path:
    return cfg.paths.run_dir / STATUS_DIR


def read_manifest(cfg: PipelineConfig) -> Manifest | None:
    """The manifest of the last submission of ``cfg``'s run, or None if it was never submitted."""
    path = status_dir(cfg) / MANIFEST
    if not path.exists():
        return None
    try:
        return Manifest.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError) as e:
        raise SaeStoreError(
            f"the run's manifest {str(path)!r} is unreadable ({e}); remove it to resubmit"
        ) from e


def active_entries(manifest: Manifest | None) -> list[slurm.QueueEntry]:
    """Jobs of ``manifest`` that SLURM still has queued or running."""
    return slurm.squeue(manifest.job_ids) if manifest else []


@contextmanager
def _submission_lock(cfg: PipelineConfig) -> Iterator[None]:
    # Two `jobs submit` of one run at the same moment would both see no active jobs.
    path = status_dir(cfg) / ".submit.lock"
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SaeStoreError(
                f"another `sae-store jobs submit` of run {str(cfg.paths.run_dir)!r} is running right now"
            ) from None
        yield


def _check_not_active(cfg: PipelineConfig, config_file: str) -> None:
    manifest = read_manifest(cfg)
    entries = active_entries(manifest)
    if manifest is not None and entries:
        names = {s.job_id: s.name for s in manifest.steps}
        listing = ", ".join(
            sorted({f"{names.get(e.job_id, '?')} (job {e.job_id}) {e.state}" for e in entries})
        )
        cfg_arg = config_file or "C"
        raise SaeStoreError(
            f"run {str(cfg.paths.run_dir)!r} already has jobs in SLURM: {listing}; wait for them "
            f"(`sae-store jobs status --config {cfg_arg}`) or cancel them (`sae-store jobs cancel "
            f"--config {cfg_arg}`) before submitting again"
        )


def submit(cfg: PipelineConfig, *, config_file: str | Path = "") -> Manifest:
    """Submit the pipeline of ``cfg`` to SLURM; steps whose outputs are complete are skipped.

    Parameters
    ----------
    cfg
        The pipeline config (with a ``slurm`` section).
    config_file
        The config's file, recorded in the manifest and named in messages.

    Returns
    -------
    Manifest
        What was submitted (also written to ``RUN/pipeline_status/manifest.json``).

    Raises
    ------
    SlurmError
        ``sbatch`` is not on PATH or a SLURM command failed.
    SaeStoreError
        Jobs of an earlier submission of this run are still queued or running.
    ConfigError
        An input is missing or the ``slurm`` section still holds an example's placeholder
        (:func:`~sae_store.jobs.preflight.check_ready`).
    """
    check_ready(cfg, str(config_file), slurm=True)
    slurm.require("sbatch")
    plans = plan(cfg, slurm=True)
    run = cfg.paths.run_dir
    for d in (STATUS_DIR, LOG_DIR, SCRIPT_DIR):
        (run / d).mkdir(parents=True, exist_ok=True)
    with _submission_lock(cfg):
        _check_not_active(cfg, str(config_file))
        (status_dir(cfg) / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
        job_of: dict[str, int] = {}
        steps = []
        for p in plans:
            try:
                step = _submit_step(cfg, p, job_of)
            except slurm.SlurmError as e:  # no half-submitted chain: its jobs are not in any manifest
                slurm.scancel(job_of.values())
                done = f"; cancelled the jobs already submitted ({', '.join(map(str, job_of.values()))})"
                raise slurm.SlurmError(
                    f"submitting step {p.step.name!r} failed: {e}{done if job_of else ''}"
                ) from e
            if step.job_id is not None:
                job_of[p.step.name] = step.job_id
                (status_dir(cfg) / f"{p.step.name}.jobid").write_text(f"{step.job_id}\n")
            steps.append(step)
        manifest = Manifest(
            run=str(run),
            submitted_at=_now(),
            steps=steps,
            config_file=str(Path(config_file).resolve()) if config_file else "",
        )
        _write_manifest(cfg, manifest)
    return manifest


def _submit_step(cfg: PipelineConfig, p: StepPlan, job_of: dict[str, int]) -> SubmittedStep:
    step = SubmittedStep(p.step.name, "complete", array=p.step.array != "none", tasks=list(p.tasks),
                         n_tasks=p.n_tasks, log=str(log_pattern(cfg, p)))  # fmt: skip
    if not p.pending:
        return step
    script = cfg.paths.run_dir / SCRIPT_DIR / f"{p.step.name}.sbatch"
    script.write_text(render_script(cfg, p, p.pending), encoding="utf-8")
    deps = sorted(job_of[a] for a in ancestors(p.step.name) if a in job_of)
    job_id = slurm.sbatch(script, after_ok=deps)
    return replace(step, state="submitted", job_id=job_id, tasks=list(p.pending), depends_on=deps,
                   script=str(script))  # fmt: skip


def cancel(cfg: PipelineConfig) -> list[int]:
    """Cancel the run's queued and running jobs (recorded in the manifest); returns their job ids."""
    manifest = read_manifest(cfg)
    ids = sorted({e.job_id for e in active_entries(manifest)})
    if manifest is not None and ids:
        slurm.scancel(ids)
        manifest.cancelled_at = _now()
        _write_manifest(cfg, manifest)
    return ids


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _write_manifest(cfg: PipelineConfig, manifest: Manifest) -> None:
    tmp = status_dir(cfg) / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2))
    tmp.replace(status_dir(cfg) / MANIFEST)
