"""Rendering sbatch scripts from the pipeline config: pure functions returning text.

Every value taken from the config is quoted for the place it lands in: ``#SBATCH`` lines are parsed
by sbatch itself (double quotes and backslash escapes, ``#`` starts a comment), the command line by
bash (:func:`shlex.quote`). Control characters are refused when the config is built, so no value can
start a new script line. Only ``slurm.setup`` lines are shell code on purpose.
"""

from __future__ import annotations

import re
import shlex
import string
import sys
from collections.abc import Sequence
from pathlib import Path

from sae_store.errors import ConfigError
from sae_store.jobs.config import PipelineConfig
from sae_store.jobs.plan import StepPlan
from sae_store.jobs.steps import TASK_ID, Arg
from sae_store.resources import resource_dir
from sae_store.selection import format_ranges

#: Folder of the sbatch templates (the repository's top-level ``jobs/``, packaged with the library).
TEMPLATE_DIR = resource_dir("jobs")
TEMPLATE = "step.sbatch"
STATUS_DIR = "pipeline_status"
LOG_DIR = "logs"
SCRIPT_DIR = "scripts"
_BARE = re.compile(r"^[A-Za-z0-9_.,:/%@=+-]+$")


class _Template(string.Template):
    # "@{name}" placeholders leave bash's own "$" syntax alone
    delimiter = "@"


def sbatch_quote(value: str) -> str:
    """Quote ``value`` for an ``#SBATCH`` line as sbatch parses it (it ignores single quotes)."""
    if _BARE.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def executable(cfg: PipelineConfig) -> list[str]:
    """How a job runs sae-store: ``slurm.executable``, else this interpreter with ``-m sae_store_cli``."""
    exe = cfg.slurm.executable if cfg.slurm else None
    return shlex.split(exe) if exe else [sys.executable, "-m", "sae_store_cli"]


def job_environment(cfg: PipelineConfig) -> dict[str, str]:
    """Environment variables every step runs with (locally and in jobs).

    ``slurm.scheduler_host`` goes to dask's config, where dask-jobqueue takes the scheduler's
    address from (``jobqueue.slurm.scheduler-options.host``), so ``analyze --cluster slurm`` binds
    its scheduler to the node's address; its worker jobs log into the run's log folder (not
    ``slurm-<id>.out`` in whatever folder the analysis started from).
    """
    if cfg.slurm is None:
        return {}
    env = {"DASK_JOBQUEUE__SLURM__LOG_DIRECTORY": str(cfg.paths.run_dir / LOG_DIR / "dask")}
    if cfg.slurm.scheduler_host:
        env["DASK_JOBQUEUE__SLURM__SCHEDULER_OPTIONS__HOST"] = cfg.slurm.scheduler_host
    return env


def shell_command(argv: Sequence[Arg]) -> str:
    """A bash command line for ``argv``; :data:`~sae_store.jobs.steps.TASK_ID` becomes the array task id."""
    return " ".join('"$SLURM_ARRAY_TASK_ID"' if a is TASK_ID else shlex.quote(str(a)) for a in argv)


def log_pattern(cfg: PipelineConfig, p: StepPlan) -> Path:
    """The ``--output`` file pattern of a step's job (``%A_%a`` for arrays, ``%j`` otherwise)."""
    name = f"{p.step.name}_%A_%a.out" if p.step.array != "none" else f"{p.step.name}_%j.out"
    return cfg.paths.run_dir / LOG_DIR / name


def render_script(cfg: PipelineConfig, p: StepPlan, tasks: Sequence[int] | None = None) -> str:
    """The sbatch script of one step, for array ``tasks`` (default: all of the plan's tasks).

    Parameters
    ----------
    cfg
        The pipeline config; its ``slurm`` section is required.
    p
        The step's plan (from :func:`~sae_store.jobs.steps.plan` with ``slurm=True``).
    tasks
        Array task ids to run, e.g. only the pending ones on a resubmission.
    """
    slurm = cfg.require_slurm()
    res = slurm.resources(p.step.name)
    run = cfg.paths.run_dir
    directives: list[tuple[str, str | None]] = [
        ("--job-name", f"{slurm.job_name_prefix}-{p.step.name}"),
        ("--partition", res.partition),
        ("--account", slurm.account),
        ("--qos", slurm.qos),
        ("--cpus-per-task", str(res.cpus)),
        ("--mem", res.memory),
        ("--time", res.time),
        ("--gres", res.gres),
        ("--chdir", str(run)),
        ("--output", str(log_pattern(cfg, p))),
        ("--kill-on-invalid-dep", "yes"),
        ("--mail-user", slurm.mail_user),
        ("--mail-type", ",".join(slurm.mail_types) or None),
    ]
    if p.step.array != "none":
        ids = p.tasks if tasks is None else tasks
        if not ids:
            raise ConfigError(f"step {p.step.name!r} has no array tasks to render")
        limit = f"%{slurm.array_limit}" if slurm.array_limit else ""
        directives.append(("--array", format_ranges(ids) + limit))
    lines = [f"#SBATCH {opt}={sbatch_quote(value)}" for opt, value in directives if value is not None]
    lines += [f"#SBATCH {d}" for d in res.extra_directives]
    argv = [*executable(cfg), *p.step.argv(cfg, p.n_tasks)]
    template = _Template((TEMPLATE_DIR / TEMPLATE).read_text(encoding="utf-8"))
    return template.substitute(
        directives="\n".join(lines),
        step=p.step.name,
        description=p.step.description,
        status_dir=shlex.quote(str(run / STATUS_DIR)),
        setup="\n".join(slurm.setup) or "# (no set-up lines in the config)",
        environment="\n".join(f"export {k}={shlex.quote(v)}" for k, v in job_environment(cfg).items()),
        command=shell_command(argv),
    )
