"""The ``slurm`` section of a pipeline config: ``#SBATCH`` defaults, per-step overrides, job set-up."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from sae_store.configbase import Settings, setting
from sae_store.errors import ConfigError

MailType = Literal[
    "NONE", "BEGIN", "END", "FAIL", "REQUEUE", "ALL", "INVALID_DEPEND", "STAGE_OUT",
    "TIME_LIMIT", "TIME_LIMIT_90", "TIME_LIMIT_80", "TIME_LIMIT_50", "ARRAY_TASKS",
]  # fmt: skip

_TIME_RE = re.compile(r"^(?:(\d+)-(\d+)(?::(\d+)(?::(\d+))?)?|(\d+)(?::(\d+)(?::(\d+))?)?)$")
_MEMORY_RE = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
_TIME_FORMATS = "MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (e.g. '02:00:00' or '1-12:00:00')"


def parse_slurm_time(text: str, *, name: str = "time") -> int:
    """Seconds of a SLURM time limit (``--time`` syntax), raising ConfigError for other formats."""
    m = _TIME_RE.match(text) if isinstance(text, str) else None
    if m is None:
        raise ConfigError(f"{name} must be a SLURM time limit in one of {_TIME_FORMATS}; got {text!r}")
    if m.group(1) is not None:  # days-hours[:minutes[:seconds]]
        days, hours, minutes, seconds = (int(g or 0) for g in m.group(1, 2, 3, 4))
        bad = hours > 23 or minutes > 59 or seconds > 59
    else:  # minutes, minutes:seconds or hours:minutes:seconds
        parts = [int(g) for g in m.group(5, 6, 7) if g is not None]
        days, hours = 0, 0
        if len(parts) == 3:
            hours, minutes, seconds = parts
            bad = minutes > 59 or seconds > 59
        else:
            minutes, seconds = (*parts, 0)[:2]
            bad = seconds > 59
    if bad:
        raise ConfigError(f"{name} {text!r} has a field out of range; use {_TIME_FORMATS}")
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


@dataclass(frozen=True)
class StepResources(Settings):
    """Per-step overrides of the SLURM defaults; null keeps the default of the ``slurm`` section."""

    partition: str | None = setting(None, help="partition of this step")
    cpus: int | None = setting(None, help="--cpus-per-task of this step", ge=1)
    memory: str | None = setting(None, help="--mem of this step, e.g. 16G")
    time: str | None = setting(None, help="--time of this step, e.g. 02:00:00")
    gres: str | None = setting(None, help="--gres of this step, e.g. gpu:1")
    tasks: int | None = setting(None, help="array tasks of a step over shard blocks (extract, encode)", ge=1)
    extra_directives: tuple[str, ...] = setting(
        (), help="more sbatch options for this step, e.g. --constraint=a100"
    )


def _check_resources(r: StepResources | SlurmConfig, where: str) -> None:
    if r.memory is not None and not _MEMORY_RE.match(r.memory):
        raise ConfigError(
            f"{where}.memory must be a size like '4G', '500M' or '16000' (MB), got {r.memory!r}"
        )
    if r.time is not None:
        parse_slurm_time(r.time, name=f"{where}.time")
    for d in r.extra_directives:
        if not d.startswith("-"):
            raise ConfigError(
                f"{where}.extra_directives holds sbatch options like '--constraint=a100', got {d!r}"
            )


@dataclass(frozen=True)
class SlurmConfig(Settings):
    """How steps are submitted to SLURM: ``#SBATCH`` defaults, per-step overrides, job set-up."""

    partition: str = setting("", help="partition to submit to (required; `sinfo -s` lists them)")
    account: str | None = setting(None, help="account charged")
    qos: str | None = setting(None, help="quality of service")
    cpus: int = setting(1, help="--cpus-per-task of every step unless overridden in steps", ge=1)
    memory: str = setting("4G", help="--mem of every step unless overridden")
    time: str = setting("01:00:00", help="--time of every step unless overridden")
    gres: str | None = setting(None, help="--gres of every step unless overridden (e.g. gpu:1)")
    tasks: int = setting(
        4, help="array tasks of the steps over shard blocks, unless overridden per step", ge=1
    )
    array_limit: int | None = setting(
        None, help="at most this many tasks of one array at once (--array=...%N)", ge=1
    )
    mail_user: str | None = setting(None, help="where SLURM sends mail")
    mail_types: tuple[MailType, ...] = setting((), help="--mail-type values, e.g. [END, FAIL]")
    setup: tuple[str, ...] = setting(
        (),
        help="shell lines run before each step, e.g. `module load cuda/12.4` or `source ~/venv/bin/activate`",
    )
    extra_directives: tuple[str, ...] = setting(
        (), help="more sbatch options for every step, e.g. --constraint=a100"
    )
    executable: str | None = setting(
        None,
        help="command that runs sae-store inside jobs (e.g. `sae-store` after setup)",
        default_text="the submitting Python interpreter, as `python -m sae_store_cli`",
    )
    scheduler_host: str | None = setting(
        None, help="address the dask scheduler of `analyze --cluster slurm` binds to (the node's address)"
    )
    job_name_prefix: str = setting("sae", help="jobs are named <prefix>-<step>")
    steps: dict[str, StepResources] = setting(
        default_factory=dict,
        help="per-step overrides by step name (e.g. `extract: {gres: 'gpu:1', tasks: 8}`)",
    )

    def check(self) -> None:
        if not self.partition:
            raise ConfigError(
                "slurm.partition is required: the partition to submit to (`sinfo -s` lists them), "
                "e.g. `partition: gpu`"
            )
        _check_resources(self, "slurm")
        for step, resources in self.steps.items():
            _check_resources(resources, f"slurm.steps.{step}")
        if self.mail_user and not self.mail_types:
            raise self.rule_error(
                f"{{mail_user}} is {self.mail_user!r} but {{mail_types}} is empty, so no mail would be "
                "sent; add e.g. `mail_types: [END, FAIL]`"
            )

    def resources(self, step: str) -> StepResources:
        """The resources of ``step``: its overrides on top of this section's defaults."""
        own = self.steps.get(step, StepResources())
        return StepResources(
            partition=own.partition or self.partition,
            cpus=own.cpus or self.cpus,
            memory=own.memory or self.memory,
            time=own.time or self.time,
            gres=own.gres or self.gres,
            tasks=own.tasks or self.tasks,
            extra_directives=self.extra_directives + own.extra_directives,
        )
