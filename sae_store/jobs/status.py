"""``sae-store jobs status``: the state of every step and array task of a submitted run, explained.

Sources, in order: squeue (queued and running tasks), the exit-status file each job script writes
when it ends (``pipeline_status/<step>_<job>_<task>.exit``), and the step's completion check on its
outputs. A task that vanished from the queue without an exit file while a step it depends on failed
was cancelled by SLURM (``--kill-on-invalid-dep``).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sae_store.errors import SaeStoreError, StoreNotFoundError
from sae_store.jobs import slurm
from sae_store.jobs.config import PipelineConfig
from sae_store.jobs.render import LOG_DIR
from sae_store.jobs.steps import get_step
from sae_store.jobs.submit import Manifest, SubmittedStep, read_manifest, status_dir

_LOG_LINES = 5
_KILLED = ("143", "137")  # bash killed by SIGTERM / SIGKILL


@dataclass
class TaskStatus:
    """One array task (or single job) of a step."""

    step: str
    task: int
    state: str
    """PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, SKIPPED (complete before submission) or UNKNOWN."""
    detail: str = ""
    job: str = ""
    """``<job id>_<task>`` (or the job id of a single job)."""
    log: str = ""


@dataclass
class RunStatus:
    """Where a submitted run stands."""

    run: str
    submitted_at: str
    tasks: list[TaskStatus]
    explanations: list[str] = field(default_factory=list)
    store_grid: str = ""

    @property
    def finished(self) -> bool:
        return all(t.state in ("COMPLETED", "SKIPPED") for t in self.tasks)

    @property
    def failed(self) -> bool:
        return any(t.state in ("FAILED", "CANCELLED", "UNKNOWN") for t in self.tasks)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "finished": self.finished, "failed": self.failed}

    def render(self) -> str:
        lines = [f"run {self.run} (submitted {self.submitted_at})"]
        by_step: dict[str, list[TaskStatus]] = {}
        for t in self.tasks:
            by_step.setdefault(t.step, []).append(t)
        for step, tasks in by_step.items():
            states = sorted({t.state for t in tasks})
            lines.append(f"  {step:<20} {', '.join(states)}")
            if any(t.state not in ("COMPLETED", "SKIPPED") for t in tasks):
                for t in tasks:
                    text = f"    task {t.task:<4} {t.state:<10} {t.job}"
                    lines.append(f"{text}  {t.detail}".rstrip())
        lines += self.explanations
        if self.store_grid:
            lines += ["", "store completion:", self.store_grid]
        return "\n".join(lines)


def _log_path(cfg: PipelineConfig, s: SubmittedStep, task: int) -> Path:
    name = f"{s.name}_{s.job_id}_{task}.out" if s.array else f"{s.name}_{s.job_id}.out"
    return cfg.paths.run_dir / LOG_DIR / name


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").rstrip().splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(f"      | {line}" for line in lines[-_LOG_LINES:])


def _step_tasks(cfg: PipelineConfig, s: SubmittedStep, queued: dict[tuple[int, int | None], slurm.QueueEntry],
                failed_steps: set[str], manifest: Manifest) -> list[TaskStatus]:  # fmt: skip
    step = get_step(s.name)
    out = []
    for task in s.tasks:
        if s.state == "complete":
            out.append(TaskStatus(s.name, task, "SKIPPED", "outputs were complete at submission"))
            continue
        job = f"{s.job_id}_{task}" if s.array else str(s.job_id)
        log = str(_log_path(cfg, s, task))
        entry = queued.get((s.job_id, task if s.array else None))  # type: ignore[arg-type]
        exit_file = status_dir(cfg) / f"{s.name}_{s.job_id}_{task}.exit"
        if entry is not None:
            detail = f"({entry.reason})" if entry.reason and entry.reason != "None" else ""
            state = entry.state
        elif exit_file.exists():
            code = exit_file.read_text().strip()
            state, detail = ("COMPLETED", "") if code == "0" else ("FAILED", f"exit code {code}")
            if manifest.cancelled_at and code in _KILLED:
                state, detail = "CANCELLED", f"by `sae-store jobs cancel` at {manifest.cancelled_at}"
        elif step.done(cfg, task, s.n_tasks):
            state, detail = "COMPLETED", "outputs complete"
        elif manifest.cancelled_at:
            state, detail = "CANCELLED", f"by `sae-store jobs cancel` at {manifest.cancelled_at}"
        else:
            dead = sorted(
                d.name for d in manifest.steps if d.job_id in s.depends_on and d.name in failed_steps
            )
            if dead:
                state, detail = "CANCELLED", f"never ran: {', '.join(dead)} failed (--kill-on-invalid-dep)"
            else:
                state = "UNKNOWN"
                detail = "left the queue without an exit status (cancelled, time limit or node failure)"
        out.append(TaskStatus(s.name, task, state, detail, job, log))
    return out


def run_status(cfg: PipelineConfig, *, config_file: str = "C") -> RunStatus:
    """The state of every task of the run's last submission, with explanations of failures.

    Raises
    ------
    SaeStoreError
        The run was never submitted (no manifest).
    """
    manifest = read_manifest(cfg)
    if manifest is None:
        raise SaeStoreError(
            f"run {str(cfg.paths.run_dir)!r} has no submission (no {status_dir(cfg) / 'manifest.json'}); "
            f"submit it with `sae-store jobs submit --config {config_file}`"
        )
    queued = {(e.job_id, e.task): e for e in slurm.squeue(manifest.job_ids)}
    tasks: list[TaskStatus] = []
    failed_steps: set[str] = set()
    for s in manifest.steps:
        step_tasks = _step_tasks(cfg, s, queued, failed_steps, manifest)
        if any(t.state in ("FAILED", "CANCELLED", "UNKNOWN") for t in step_tasks):
            failed_steps.add(s.name)
        tasks += step_tasks
    status = RunStatus(manifest.run, manifest.submitted_at, tasks)
    for t in tasks:
        if t.state == "FAILED":
            status.explanations.append(f"{t.step} task {t.task} (job {t.job}) failed with {t.detail}; "
                                       f"end of {t.log}:\n{_tail(Path(t.log))}")  # fmt: skip
        elif t.state in ("CANCELLED", "UNKNOWN"):
            status.explanations.append(f"{t.step} task {t.task} (job {t.job}): {t.detail}")
    if status.failed and not queued:
        status.explanations.append(
            f"next: fix the cause, then `sae-store jobs submit --config {config_file}` submits only what is "
            "incomplete (complete steps and array tasks are skipped; extraction resumes from its flags)"
        )
    with contextlib.suppress(StoreNotFoundError):
        from sae_store.store import completion, open_store

        status.store_grid = completion(open_store(cfg.paths.path("store"))).render()
    return status
