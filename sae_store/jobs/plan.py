"""Planning a run: which steps and array tasks the config's pipeline has, and which still have work.

The same plan drives local runs (a ``blocks`` step is one task there) and SLURM submissions.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from sae_store.errors import ConfigError, SaeStoreError, StoreNotFoundError
from sae_store.jobs.config import PipelineConfig
from sae_store.jobs.steps import STEPS, Step, ancestors, step_names


class StepPlan(NamedTuple):
    """What running one step means now: its tasks and which of them still have work."""

    step: Step
    tasks: tuple[int, ...]
    """Array task ids (``(0,)`` for a single job)."""
    n_tasks: int
    """Task count passed to a ``blocks`` step."""
    pending: tuple[int, ...]
    """Tasks whose outputs are not complete."""


def _n_blocks(cfg: PipelineConfig) -> tuple[int, str] | None:
    """Shard blocks of the store (or an upper bound before it exists), with where that came from."""
    spp = cfg.store.samples_per_shard
    try:
        from sae_store.store import open_store

        store = open_store(cfg.paths.path("store"))
        return store.layout.n_blocks, f"the store holds {store.layout.n_samples} samples"
    except StoreNotFoundError:
        pass
    samples = cfg.paths.path("prepared") / "samples.csv"
    if samples.exists():
        from sae_store.data.samples import read_samples

        n = len(read_samples(samples))
        return -(-n // spp), f"{samples} holds {n} samples"
    bound = cfg.samples.num_samples or (cfg.demo.n_images if cfg.demo else None)
    if bound is not None:
        return -(-bound // spp), f"at most {bound} samples will be prepared"
    return None


def pipeline_layers(cfg: PipelineConfig) -> tuple[int, ...]:
    """The layers the run covers: the config's, else the store's, the demo model's or the model's."""
    if cfg.layers is not None:
        return cfg.layers
    try:
        from sae_store.store import open_store

        return open_store(cfg.paths.path("store")).layout.layers
    except StoreNotFoundError:
        pass
    if cfg.demo is not None:
        return tuple(range(cfg.demo.model_layers))
    config_json = cfg.paths.path("model") / "config.json"
    try:
        model = json.loads(config_json.read_text())
        return tuple(range(int(model.get("text_config", model)["num_hidden_layers"])))
    except (OSError, KeyError, ValueError) as e:
        raise ConfigError(
            f"cannot tell which layers to run: `layers` is not set and {str(config_json)!r} gives no "
            f"num_hidden_layers ({e}); set `layers: [...]` in the config"
        ) from e


def plan(cfg: PipelineConfig, *, slurm: bool) -> list[StepPlan]:
    """The steps of ``cfg``'s pipeline with their tasks and what is pending, in order.

    A task is pending when its outputs are incomplete, or when a step it reads from has pending
    tasks (its outputs would be stale). ``slurm=False`` plans a local run: a ``blocks`` step is one
    task over all samples.

    Raises
    ------
    ConfigError
        ``skip`` or ``slurm.steps`` names an unknown step, or a ``blocks`` step has more array tasks than the
        store has shard blocks (the extra tasks would have nothing to do).
    """
    named = {"skip": set(cfg.skip), "slurm.steps": set(cfg.require_slurm().steps) if slurm else set()}
    for where, names in named.items():
        unknown = sorted(names - set(step_names()))
        if unknown:
            raise ConfigError(
                f"{where} names unknown step(s) {unknown}; the pipeline's steps are {step_names()}"
            )
    out = []
    running: set[str] = set()
    for step in STEPS:
        if not step.when(cfg) or step.name in cfg.skip:
            continue
        n_tasks = 1
        tasks: tuple[int, ...] = (0,)
        if step.array == "blocks" and slurm:
            n_tasks = cfg.require_slurm().resources(step.name).tasks or 1
            blocks = _n_blocks(cfg)
            if blocks is not None and n_tasks > blocks[0]:
                raise ConfigError(
                    f"slurm.steps.{step.name}.tasks (or slurm.tasks) is {n_tasks}, but {blocks[1]}, which is "
                    f"{blocks[0]} shard block(s) of {cfg.store.samples_per_shard}: an array task needs at "
                    f"least one block; use at most {blocks[0]} tasks or a smaller store.samples_per_shard"
                )
            tasks = tuple(range(n_tasks))
        elif step.array == "layers":
            tasks = step.layers(cfg) or pipeline_layers(cfg)
        if ancestors(step.name) & running:
            pending = tasks  # its inputs are being (re)made, so its outputs will be stale
        else:
            try:
                pending = tuple(t for t in tasks if not step.done(cfg, t, n_tasks))
            except SaeStoreError:
                pending = tasks
        if pending:
            running.add(step.name)
        out.append(StepPlan(step, tasks, n_tasks, pending))
    return out
