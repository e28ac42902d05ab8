"""Running the pipeline's steps here, in order, with the same commands the SLURM jobs run.

A step whose outputs are complete is skipped, so rerunning after a failure resumes. A ``blocks``
step runs as one task over all samples; a ``layers`` step runs once per layer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

from sae_store.errors import SaeStoreError
from sae_store.jobs.config import PathName, PipelineConfig
from sae_store.jobs.plan import plan
from sae_store.jobs.preflight import check_ready
from sae_store.jobs.render import job_environment, shell_command
from sae_store.jobs.steps import TASK_ID


class CommandRunner(Protocol):
    """Runs one command line with extra environment variables and returns its exit status."""

    def __call__(self, argv: Sequence[str], env: Mapping[str, str]) -> int: ...


def run_command(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run ``argv`` as a child process sharing this terminal, with ``env`` added to the environment."""
    return subprocess.run(list(argv), check=False, env={**os.environ, **env}).returncode


class StepResult(NamedTuple):
    """What the local runner did with one step."""

    name: str
    ran: bool
    """False when its outputs were already complete."""
    seconds: float


class PipelineError(SaeStoreError):
    """A step of a local pipeline run failed."""


def run_pipeline(
    cfg: PipelineConfig,
    *,
    runner: CommandRunner = run_command,
    echo: Callable[[str], None] = print,
    rerun: str = "sae-store pipeline --config C",
) -> list[StepResult]:
    """Run the pipeline of ``cfg`` on this machine, step by step, skipping complete steps.

    Each task runs ``python -m sae_store_cli <step command>`` in a child process, so one step's
    memory is freed before the next and a crash stops only that step. ``rerun`` is the command
    named in the error message as the way to resume.

    Raises
    ------
    PipelineError
        A step exited with a non-zero status (the message names it and how to resume).
    ConfigError
        An input of the run (captions, images, model) is missing.
    """
    check_ready(cfg, "", slurm=False)
    exe = [sys.executable, "-m", "sae_store_cli"]
    plans = plan(cfg, slurm=False)
    results = []
    for i, p in enumerate(plans, 1):
        head = f"[{i}/{len(plans)}] {p.step.name}"
        if not p.pending:
            echo(f"{head}: already complete, skipped")
            results.append(StepResult(p.step.name, False, 0.0))
            continue
        echo(f"{head}: {p.step.description}")
        start = time.perf_counter()
        for task in p.pending:
            argv = [str(task) if a is TASK_ID else str(a) for a in p.step.argv(cfg, p.n_tasks)]
            echo(f"  $ sae-store {shell_command(argv)}")
            code = runner([*exe, *argv], job_environment(cfg))
            if code:
                label = f"step {p.step.name!r}" + (f" (task {task})" if p.step.array != "none" else "")
                raise PipelineError(
                    f"{label} failed with exit status {code}; fix the cause and run `{rerun}` again: "
                    "complete steps are skipped"
                )
        seconds = time.perf_counter() - start
        echo(f"{head}: done in {seconds:.1f} s")
        results.append(StepResult(p.step.name, True, seconds))
    return results


def outputs(cfg: PipelineConfig) -> dict[str, Path]:
    """The run's outputs that exist, by name (store, SAEs, results, report, ...)."""
    names: tuple[PathName, ...] = ("prepared", "model", "store", "saes", "results", "report")
    return {n: cfg.paths.path(n) for n in names if cfg.paths.path(n).exists()}
