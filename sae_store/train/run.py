"""One training run of one layer: store -> data provider -> trainer -> SAE folder.

The folder ``<out>/layer_<L>/`` receives ``metrics.jsonl`` while training, ``checkpoint/state.pt``
every ``checkpoint_every`` steps (removed once the SAE is saved), and finally the SAE itself
(:func:`~sae_store.train.formats.save_sae`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import pickle
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import torch

from sae_store._version import __version__
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
from sae_store.train.metrics import EvalResult
from sae_store.train.sae import build_sae
from sae_store.train.trainer import Trainer

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.pt"
_CHECKPOINT_VERSION = 2


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


def _fit(
    trainer: Trainer,
    provider: StoreDataProvider,
    folder: Path,
    ckpt: Path,
    config: RunConfig,
    scale: float,
    state: dict[str, Any] | None,
    progress: bool,
) -> EvalResult:
    """Train to the end (from ``state`` if given), writing metrics and checkpoints; evaluate."""
    metrics_path = folder / METRICS_FILE
    if state is not None:
        trainer.load_state_dict(state["trainer"])
        position = state["data"]
        _rewrite_metrics(metrics_path, trainer.step)
    else:
        position = None
        metrics_path.write_text("")
    batches = provider.batches(scale=scale, position=position)

    def on_log(record: dict[str, Any]) -> None:
        with metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def on_checkpoint(step: int) -> None:
        save_checkpoint(
            ckpt,
            {
                "run_config": config.to_dict(),
                "scale": scale,
                "data": batches.state_dict(),
                "trainer": trainer.state_dict(),
            },
        )

    try:
        trainer.fit(batches, on_log=on_log, on_checkpoint=on_checkpoint, progress=progress)
    finally:
        batches.close()
    result = trainer.evaluate(provider.validation_batches(scale=scale))
    on_log({"step": trainer.step, "split": "val", **result.metrics})
    return result


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
        checkpoint is unreadable.
    ConfigError
        Resuming with a different input width or different settings.
    """
    folder = layer_folder(out_dir, config.data.layer)
    ckpt = folder / CHECKPOINT_DIR / CHECKPOINT_FILE
    if not overwrite and is_trained(folder):
        if resume:
            return TrainResult(folder, {}, None, True)
        raise SaeStoreError(
            f"{str(folder)!r} already holds a trained SAE; pass --overwrite to train it again"
        )
    if not overwrite and ckpt.is_file() and not resume:
        raise SaeStoreError(
            f"{str(folder)!r} holds a checkpoint of an unfinished run; pass --resume to continue it "
            "or --overwrite to start over"
        )
    # everything that can be refused is checked before anything on disk changes
    provider = StoreDataProvider(store, config.data)
    config = replace(config, sae=replace(config.sae, d_in=provider.d_in))
    state = load_checkpoint(ckpt) if resume and not overwrite and ckpt.is_file() else None
    if state is not None:
        _check_resume(RunConfig.from_dict(state["run_config"]), config, provider.d_in, ckpt)
    trainer = Trainer(build_sae(config.sae, seed=config.trainer.seed), config.trainer)
    scale = float(state["scale"]) if state is not None else provider.estimate_scale()
    if overwrite:
        for name in (CFG_FILE, WEIGHTS_FILE, SPARSITY_FILE, METRICS_FILE):
            (folder / name).unlink(missing_ok=True)
        shutil.rmtree(folder / CHECKPOINT_DIR, ignore_errors=True)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        result = _fit(trainer, provider, folder, ckpt, config, scale, state, progress)
    except BaseException:
        if created and not ckpt.is_file():  # nothing worth keeping: leave no empty layer folder
            shutil.rmtree(folder, ignore_errors=True)
        raise
    layer = config.data.layer
    metadata = {
        "model_name": store.attrs.get("model", {}).get("name_or_path"),
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
        folder,
        scale=scale,
        metadata=metadata,
        provenance=provenance,
        log10_density=result.log10_density,
    )
    shutil.rmtree(folder / CHECKPOINT_DIR, ignore_errors=True)
    return TrainResult(
        folder, result.metrics, None if state is None else int(state["trainer"]["step"]), False
    )
