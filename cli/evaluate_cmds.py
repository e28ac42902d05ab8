"""``sae-store evaluate``: which SAE set to trust, per layer, on the store's own tokens."""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

from sae_store.arraytask import task_layer
from sae_store.errors import ConfigError
from sae_store.evaluate.config import EvaluateConfig
from sae_store.models.config import ModelRunConfig

from .options import (
    add_images,
    add_layer,
    add_layers,
    add_model,
    add_overwrite,
    add_progress,
    add_results,
    add_saes,
    add_settings,
    add_store,
    build,
    layers_from_args,
    results_from_args,
)
from .parser import add_command, show

#: Columns of the comparison printed per (layer, set) (headers: :data:`~sae_store.evaluate.compare.HEADERS`).
_COLUMNS = (
    "explained_variance", "explained_variance_legacy", "l0", "dead_fraction", "dense_fraction",
    "ce_loss_score:image", "ce_loss_score:all", "kl_div_score:all", "gender probe top-1 latent",
    "gender probe raw",
)  # fmt: skip


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def _evaluate(args: argparse.Namespace) -> int:
    """Compare SAE sets per layer on the store's held-out samples, split by token role and language.

    Each --saes set (ours, SAELens, sparsify, Gemma Scope; NAME=DIR names it) is measured on the same
    samples: reconstruction and sparsity (SAEBench's core metrics, explained variance by the correct and the
    legacy formula) per token role and language from the stored activations; CE loss recovered and KL score
    with the SAE spliced into the model, teacher-forcing the reference captions; sparse probes of gender
    and language beside probes on the raw activations. Results go to the store's evaluation/<set> groups and
    SAEBench-layout JSON; the best set per layer is printed. Resumable; --layer L runs one layer (an sbatch
    array over layers).
    """
    if args.layer is not None and args.layers is not None:
        raise ConfigError("pass --layer L (one layer, an array task) or --layers SPEC, not both")
    layers = layers_from_args(args)
    if args.layer is not None or (layers is None and "SLURM_ARRAY_TASK_ID" in os.environ):
        layers = (task_layer(args.layer),)
    config = build(args, EvaluateConfig)
    model_config = build(args, ModelRunConfig)
    from sae_store.evaluate.compare import HEADERS
    from sae_store.evaluate.run import evaluate_store
    from sae_store.store import open_store

    store = open_store(args.store)
    outcome = evaluate_store(
        store,
        args.saes,
        config,
        layers=layers,
        out_dir=results_from_args(args) / "evaluate",
        model=args.model,
        images_dir=args.images,
        model_config=model_config,
        overwrite=args.overwrite,
        progress=not args.no_progress and not args.json,
    )
    payload = {
        "evaluated": outcome.evaluated,
        "already_complete": outcome.done_before,
        "absent": {k: v for k, v in outcome.absent.items() if v},
        "no_tokens": outcome.empty,
        "behaviour": outcome.behaviour,
        "comparison": json.loads(outcome.table.to_json(orient="records")),
        "best": json.loads(outcome.best.to_json(orient="records")),
        "files": [str(p) for p in outcome.files],
    }
    lines: list[str] = []
    for name, layers_done in outcome.evaluated.items():
        lines.append(f"{name}: evaluated layer(s) {layers_done}")
    for name, layers_done in outcome.done_before.items():
        lines.append(
            f"{name}: layer(s) {layers_done} were evaluated before (--overwrite evaluates them again)"
        )
    for name, missing in outcome.absent.items():
        if missing:
            lines.append(f"{name}: no SAE for layer(s) {missing}, not evaluated there")
    for name, by_layer in outcome.empty.items():
        for layer, splits in by_layer.items():
            lines.append(
                f"{name} layer {layer}: no tokens in {', '.join(splits)} (those splits have no metrics)"
            )
    lines.append(f"model runs (CE loss recovered, KL score): {outcome.behaviour}")
    shown = [c for c in _COLUMNS if c in outcome.table]
    if shown:
        lines += ["", " | ".join(["layer", "set", *(HEADERS[c] for c in shown)])]
        for record in outcome.table.to_dict(orient="records"):
            lines.append(
                " | ".join([str(record["layer"]), str(record["set"]), *(_cell(record[c]) for c in shown)])
            )
    if len(outcome.best):
        lines += ["", f"best per layer (by {config.rank_by}; explained variance where it was not measured):"]
        for row in outcome.best.to_dict(orient="records"):
            second = row["runner-up"]
            versus = f", {row['margin']:+.3f} over {second}" if second else ""
            versus = f", tied with {second}" if row["tie"] else versus
            lines.append(f"  layer {row['layer']}: {row['best']} ({row['by']} {row['value']:.3f}{versus})")
    if outcome.files:
        lines += ["", f"results: {args.store}/evaluation/<set>, {Path(outcome.files[0]).parent.parent}/"]
    show(args, payload, lines)
    return 0


def _add_evaluate(subparsers: Any) -> None:
    p = add_command(subparsers, "evaluate", _evaluate)
    add_store(p)
    add_saes(p, required=True, repeat=True)
    add_layers(p, "layers to evaluate", "every layer of the store")
    add_layer(p)
    add_model(p)
    add_images(p)
    add_results(p, "results folder; the SAEBench-layout JSON goes to its evaluate/")
    add_settings(p, EvaluateConfig, title="evaluation")
    add_settings(p, ModelRunConfig, title="model runs")
    add_overwrite(
        p, "evaluate the layers again; a set's group made with other settings is replaced (all its layers)"
    )
    add_progress(p)


COMMANDS = {"evaluate": _add_evaluate}
