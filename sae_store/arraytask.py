"""Which SLURM array task this process is: a block range's index and count, or a layer."""

from __future__ import annotations

import os
from collections.abc import Mapping

from sae_store.errors import ConfigError


def slurm_task(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """The array task ``(index, count)`` from ``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT``.

    ``(0, 1)`` outside an array job. Array ids are taken relative to ``SLURM_ARRAY_TASK_MIN`` so
    ``--array=1-8`` works as well as ``--array=0-7``.
    """
    env = os.environ if environ is None else environ
    if "SLURM_ARRAY_TASK_ID" not in env:
        return 0, 1
    try:
        task_id = int(env["SLURM_ARRAY_TASK_ID"])
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        count = int(env.get("SLURM_ARRAY_TASK_COUNT", "1"))
    except ValueError as e:
        raise ConfigError(f"SLURM array variables are not integers: {e}") from e
    return task_id - first, count


def task_layer(layer: int | None, environ: Mapping[str, str] | None = None) -> int:
    """``layer`` if given, else ``SLURM_ARRAY_TASK_ID``: ``sbatch --array=0-33`` runs one layer per task."""
    if layer is not None:
        return layer
    env = os.environ if environ is None else environ
    task = env.get("SLURM_ARRAY_TASK_ID")
    if task is None:
        raise ConfigError("no layer given: pass --layer L, or run as a SLURM array task (--array=<layers>)")
    try:
        return int(task)
    except ValueError:
        raise ConfigError(f"SLURM_ARRAY_TASK_ID must be an integer layer, got {task!r}") from None
