"""Training runs of one layer: store -> data provider -> trainer(s) -> SAE folder(s).

:func:`train_layer` trains one SAE; :func:`train_sweep` trains several SAEs of one layer (a width or
k sweep, several architectures) from one pass over the same batches, each as it would be trained
alone. Each SAE's folder ``<out>/layer_<L>/`` receives ``metrics.jsonl`` while training,
``checkpoint/state.pt`` every ``checkpoint_every`` steps (removed once the SAE is saved), and
finally the SAE itself (:func:`~sae_store.train.formats.save_sae`), as soon as its run ends.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import pickle
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch

from sae_store._version import __version__
from sae_store.device import resolve_device
from sae_store.errors import ConfigError, SaeStoreError
from sae_store.store import ActivationStore
from sae_store.train.config import RunConfig
from sae_store.train.data import StoreDataProvider
from sae_store.train.folder import (
    CFG_FILE,
    METRICS_FILE,
    SPARSITY_FILE,
    WEIGHTS_FILE,
    is_trained,
    layer_folder,
)
from sae_store.train.formats import save_sae
from sae_store.train.sae import build_sae
from sae_store.train.sweep import check_sweep
from sae_store.train.trainer import Hooks, Trainer, fit_together

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.pt"
_CHECKPOINT_VERSION = 3


class TrainResult(NamedTuple):
    """Where the SAE went and how it did."""

    folder: Path
    metrics: dict[str, Any]
    """Held-out metrics (empty when the layer was already trained and skipped)."""
    resumed_from: int | None
    """Step of the checkpoint the run continued from, if any."""
    skipped: bool
    """The folder already held a finished SAE and ``resume`` was set: nothing was done."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically (a killed writer leaves the previous one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"version": _CHECKPOINT_VERSION, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain values only, no pickle)."""
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("version") != _CHECKPOINT_VERSION or not {
            "run_config",
            "trainer",
            "data",
            "scale",
        } <= set(state):
            raise ValueError(f"not a version-{_CHECKPOINT_VERSION} training checkpoint")
    except Exception as e:  # torch raises several types for truncated or foreign files
        # never torch's own text for these: it advises loading the file unsafely
        text = str(e).strip()
        unsafe = "weights only load failed" in text.lower() or isinstance(e, pickle.UnpicklingError)
        reason = "not a tensor-only checkpoint" if unsafe or not text else text.splitlines()[0][:120]
        raise SaeStoreError(
            f"checkpoint {str(path)!r} is unreadable ({reason}); delete it (or the whole "
            "folder) and train again without --resume"
        ) from e
    return state


def _check_resume(saved: RunConfig, wanted: RunConfig, d_in: int, path: Path) -> None:
    if saved.sae.d_in != d_in:
        raise ConfigError(
            f"checkpoint {str(path)!r} was trained with d_in={saved.sae.d_in}, but the store's layer has "
            f"hidden size {d_in}; resume it with the store it came from, or start over with --overwrite"
        )
    diff = saved.differences(wanted)
    if diff:
        raise ConfigError(
            f"checkpoint {str(path)!r} was made with other settings ({'; '.join(diff)}); resume with the "
            "same settings, or start over with --overwrite"
        )


def _rewrite_metrics(path: Path, keep_until: int) -> None:
    """Drop the records written after the checkpoint being resumed (they will be written again)."""
    if not path.is_file():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = [
        ln for ln in lines if json.loads(ln).get("step", 0) <= keep_until and "split" not in json.loads(ln)
    ]
    path.write_text("".join(ln + "\n" for ln in kept))


@dataclass
class _Run:
    """One SAE of a pass: its settings, folder, checkpoint state and, once started, its trainer."""

    config: RunConfig
    folder: Path
    state: dict[str, Any] | None = None
    trainer: Trainer | None = None
    created: bool = False
    result: TrainResult | None = None

    @property
    def ckpt(self) -> Path:
        return self.folder / CHECKPOINT_DIR / CHECKPOINT_FILE


def _claim(run: _Run, *, resume: bool, overwrite: bool) -> None:
    """Refuse a folder whose content neither flag says what to do with; mark a finished one skipped."""
    if not overwrite and is_trained(run.folder):
        if resume:
            run.result = TrainResult(run.folder, {}, None, True)
            return
        raise SaeStoreError(
            f"{str(run.folder)!r} already holds a trained SAE; pass --overwrite to train it again"
        )
    if not overwrite and run.ckpt.is_file() and not resume:
        raise SaeStoreError(
            f"{str(run.folder)!r} holds a checkpoint of an unfinished run; pass --resume to continue it "
            "or --overwrite to start over"
        )


def train_layer(
    store: ActivationStore,
    config: RunConfig,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train the SAE of ``config.data.layer`` on ``store`` and save it under ``out_dir/layer_<L>``.

    Parameters
    ----------
    resume
        Continue from the folder's checkpoint if there is one (and do nothing if the SAE is
        already finished), so a re-queued job picks up where it stopped.
    overwrite
        Discard whatever the folder holds and train from scratch.

    Raises
    ------
    SaeStoreError
        The folder holds a finished SAE or an unfinished run and neither flag says what to do; the
        checkpoint is unreadable; the device is not available.
    ConfigError
        Resuming with a different input width or different settings.
    """
    return train_sweep(store, [config], [out_dir], resume=resume, overwrite=overwrite, progress=progress)[0]


def train_sweep(
    store: ActivationStore,
    configs: Sequence[RunConfig],
    out_dirs: Sequence[str | os.PathLike[str]],
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> list[TrainResult]:
    """Train the SAE of each of ``configs`` (one layer, the same data settings) under its
    ``out_dirs[i]/layer_<L>`` from one pass over the layer's batches; :func:`train_layer` says what
    the flags do and what is refused. A run that ends early (fewer steps) is saved when it ends.

    Raises
    ------
    ConfigError
        The entries train different layers, input widths, data settings or devices, or share a folder
        (the entries in conflict are named).
    """
    check_sweep(configs, [str(d) for d in out_dirs], store.layout.hidden_size)
    device = resolve_device(configs[0].trainer.device)
    runs = [_Run(c, layer_folder(d, c.data.layer)) for c, d in zip(configs, out_dirs, strict=True)]
    for run in runs:
        _claim(run, resume=resume, overwrite=overwrite)
    # everything that can be refused is checked before anything on disk changes
    provider = StoreDataProvider(store, configs[0].data, device)
    todo = [r for r in runs if r.result is None]
    for run in todo:
        run.config = replace(run.config, sae=replace(run.config.sae, d_in=provider.d_in))
        if resume and not overwrite and run.ckpt.is_file():
            run.state = load_checkpoint(run.ckpt)
            _check_resume(RunConfig.from_dict(run.state["run_config"]), run.config, provider.d_in, run.ckpt)
        run.trainer = Trainer(build_sae(run.config.sae, seed=run.config.trainer.seed), run.config.trainer)
    if not todo:
        return [r.result for r in runs if r.result is not None]
    scales = {float(r.state["scale"]) for r in todo if r.state is not None}
    scale = scales.pop() if len(scales) == 1 else provider.estimate_scale()
    for run in todo:
        if overwrite:
            for name in (CFG_FILE, WEIGHTS_FILE, SPARSITY_FILE, METRICS_FILE):
                (run.folder / name).unlink(missing_ok=True)
            shutil.rmtree(run.folder / CHECKPOINT_DIR, ignore_errors=True)
        run.created = not run.folder.exists()
        run.folder.mkdir(parents=True, exist_ok=True)
    try:
        _fit(store, provider, todo, scale, progress)
    except BaseException:
        for run in todo:  # nothing worth keeping: leave no empty layer folder
            if run.created and run.result is None and not run.ckpt.is_file():
                shutil.rmtree(run.folder, ignore_errors=True)
        raise
    return [r.result for r in runs if r.result is not None]


def _fit(
    store: ActivationStore, provider: StoreDataProvider, runs: list[_Run], scale: float, progress: bool
) -> None:
    """Train every run from one stream of batches (from the earliest checkpoint), each writing its
    metrics and checkpoints and saved as soon as it ends."""
    for run in runs:
        assert run.trainer is not None
        if run.state is not None:
            if float(run.state["scale"]) != scale:
                raise SaeStoreError(
                    f"checkpoint {str(run.ckpt)!r} was made with another input scale than the others of "
                    "this sweep; resume it alone, or start over with --overwrite"
                )
            run.trainer.load_state_dict(run.state["trainer"])
            _rewrite_metrics(run.folder / METRICS_FILE, run.trainer.step)
        else:
            (run.folder / METRICS_FILE).write_text("")
    first = min(runs, key=lambda r: r.trainer.step if r.trainer else 0)
    batches = provider.batches(scale=scale, position=first.state["data"] if first.state else None)

    def hooks(run: _Run) -> Hooks:
        def on_log(record: dict[str, Any]) -> None:
            with (run.folder / METRICS_FILE).open("a") as f:
                f.write(json.dumps(record) + "\n")

        def on_checkpoint(step: int) -> None:
            assert run.trainer is not None
            save_checkpoint(
                run.ckpt,
                {"run_config": run.config.to_dict(), "scale": scale, "data": batches.state_dict(),
                 "trainer": run.trainer.state_dict()},
            )  # fmt: skip

        return Hooks(on_log, on_checkpoint, lambda: _finish(store, provider, run, scale))

    try:
        fit_together(
            [(r.trainer, hooks(r)) for r in runs if r.trainer is not None], batches, progress=progress
        )
    finally:
        batches.close()


def _finish(store: ActivationStore, provider: StoreDataProvider, run: _Run, scale: float) -> None:
    """Evaluate a run that made its last step, save its SAE and drop its checkpoint."""
    trainer, config = run.trainer, run.config
    assert trainer is not None
    result = trainer.evaluate(provider.validation_batches(scale=scale))
    with (run.folder / METRICS_FILE).open("a") as f:
        f.write(json.dumps({"step": trainer.step, "split": "val", **result.metrics}) + "\n")
    layer = config.data.layer
    metadata = {
        "model_name": store.model_folder,
        "hook_name": f"blocks.{layer}.hook_resid_post",
        "hook_layer": layer,
        "context_size": store.layout.max_tokens,
        "prepend_bos": True,
        "dataset_path": str(store.path.resolve()),
    }
    provenance = {
        "store": str(store.path.resolve()),
        "layer": layer,
        "languages": provider.languages,
        "roles": list(config.data.roles),
        "normalization": "inputs scaled by norm_scale to mean norm sqrt(d_in) in training; folded in",
        "metrics": {"val": result.metrics},
        "data": provider.describe(),
        "run_config": config.to_dict(),
        "model": store.attrs.get("model", {}),
        "sae_store_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    save_sae(
        trainer.sae,
        run.folder,
        scale=scale,
        metadata=metadata,
        provenance=provenance,
        log10_density=result.log10_density,
    )
    shutil.rmtree(run.folder / CHECKPOINT_DIR, ignore_errors=True)
    resumed = None if run.state is None else int(run.state["trainer"]["step"])
    run.result = TrainResult(run.folder, result.metrics, resumed, False)
    run.trainer = None  # its memory (the device's, on a GPU) goes back before the others end
