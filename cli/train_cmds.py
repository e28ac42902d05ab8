"""``sae-store train`` and ``sae-store encode``: one SAE per layer, then features back into the store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sae_store.arraytask import task_layer
from sae_store.selection import format_ranges, layer_list
from sae_store.train.config import DataConfig, EncodeConfig, RunConfig, SaeConfig, TrainerConfig

from .options import (
    add_layer,
    add_layers,
    add_overwrite,
    add_progress,
    add_saes,
    add_settings,
    add_store,
    add_task,
    build,
    layers_from_args,
    task_from_args,
)
from .parser import add_command, show


def run_config(args: argparse.Namespace, layer: int) -> RunConfig:
    """The training run the options describe (``--seed`` seeds the data and the trainer alike)."""
    return RunConfig(
        sae=build(args, SaeConfig),
        data=build(args, DataConfig, layer=layer),
        trainer=build(args, TrainerConfig),
    )


def _train(args: argparse.Namespace) -> int:
    """Train one SAE on a layer of the store (saved as <out>/layer_<L>, SAELens layout).

    Train a sparse autoencoder on one layer, streaming token vectors from the store. --layer defaults to
    $SLURM_ARRAY_TASK_ID (one array task per layer). With --sweep, several SAEs of the layer (the product
    of the values given) are trained from one pass over the same batches, each saved as
    <out>/<SETTING=VALUE,...>/layer_<L>.
    """
    layer = task_layer(args.layer)
    config = run_config(args, layer)
    from sae_store.train.sweep import sweep_entries

    entries = sweep_entries(config, args.sweep) if args.sweep else [("", config)]
    from sae_store.store import open_store
    from sae_store.train.discovery import dead_text
    from sae_store.train.run import train_sweep

    store = open_store(args.store)
    results = train_sweep(
        store,
        [c for _, c in entries],
        [Path(args.out) / name for name, _ in entries],
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    records, lines = [], []
    for result in results:
        records.append({"layer": layer, "folder": result.folder, "skipped": result.skipped,
                        "resumed_from": result.resumed_from, "metrics": result.metrics})  # fmt: skip
        if result.skipped:
            lines.append(f"layer {layer}: {result.folder} already holds a trained SAE; nothing to do")
            continue
        m, nan = result.metrics, float("nan")
        resumed = f" (resumed from step {result.resumed_from})" if result.resumed_from is not None else ""
        lines.append(
            f"layer {layer}: saved {result.folder}{resumed}; held-out: explained variance "
            f"{m.get('explained_variance', nan):.3f}, L0 {m.get('l0', nan):.1f}, "
            f"{dead_text(m, 'dead_fraction')}; {dead_text(m, 'dead_fraction_train_window')}"
        )
    show(args, records[0] if len(records) == 1 else {"layer": layer, "sweep": records}, lines)
    return 0


def _encode(args: argparse.Namespace) -> int:
    """Encode activations with the trained SAEs into the store's features group.

    Per (layer, language, sample, feature): mean and max of the latent over the sample's tokens of the chosen
    roles and the fraction of them where it is active. Resumable; array tasks (--task-index/--task-count,
    default from SLURM) own contiguous runs of shard blocks.
    """
    config = build(args, EncodeConfig)
    layers = layers_from_args(args)
    index, count = task_from_args(args)
    from sae_store.store import open_store
    from sae_store.train.discovery import find_saes
    from sae_store.train.encode import encode_features

    store = open_store(args.store)
    saes = find_saes(args.saes, list(layers) if layers is not None else None)
    result = encode_features(
        store,
        saes,
        config,
        task_index=index,
        task_count=count,
        restart=args.overwrite,
        progress=not args.no_progress,
    )
    without = [layer for layer in store.layout.layers if layer not in saes] if layers is None else []
    data = {"features": f"{store.path}/features", "encoded": result.encoded, "skipped": result.skipped,
            "layers": list(result.layers), "without_sae": without, "task_index": index,
            "task_count": count}  # fmt: skip
    text = (
        f"encoded {result.encoded} (layer, language, block) units into {store.path}/features "
        f"({layer_list(result.layers)}, task {index + 1}/{count}); {result.skipped} were already complete"
    )
    if without:
        text += (
            f"\nnot encoded: layers {format_ranges(without, ',')} have no SAE in {args.saes!r}; train them "
            f"(`sae-store train {store.path} --layer L --out {args.saes}`) and run encode again"
        )
    show(args, data, text)
    return 0


def _export(args: argparse.Namespace) -> int:
    """Write SAEs again in sparsify's or Gemma Scope's layout (same numbers, another tool's files).

    TopK SAEs go to sparsify's layout (layers.<L>/cfg.json + sae.safetensors), SAEs with a ReLU or a threshold
    to Gemma Scope's (resid_post/layer_<L>_width_<d_sae>/params.safetensors); every command taking --saes
    reads both.
    """
    from sae_store.train.discovery import find_saes
    from sae_store.train.export import export_saes

    layers = layers_from_args(args)
    written = export_saes(
        find_saes(args.saes, list(layers) if layers is not None else None),
        args.out,
        args.layout,
        progress=not args.no_progress,
    )
    data = {"layout": args.layout, "out": args.out, "layers": {str(k): str(v) for k, v in written.items()}}
    show(args, data, [f"layer {layer}: {folder}" for layer, folder in written.items()])
    return 0


def _add_train(subparsers: Any) -> None:
    p = add_command(subparsers, "train", _train)
    add_store(p)
    add_layer(p)
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="folder of SAEs; this layer's goes to DIR/layer_<L> (required)",
    )
    add_settings(p, SaeConfig, title="SAE")
    add_settings(p, DataConfig, title="training data")
    add_settings(p, TrainerConfig, title="optimisation")
    p.add_argument(
        "--sweep",
        action="append",
        metavar="KEY=V,V,...",
        help="train an SAE for each value (repeat for the product of several settings) from one pass "
        "over the data, each saved as <out>/<SETTING=VALUE,...>/layer_<L>; e.g. --sweep k=32,64 "
        "--sweep lr=1e-3,3e-3 (default: one SAE, no sweep)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the layer's checkpoint (do nothing if it is already trained)",
    )
    add_overwrite(p, "discard the layer's folder and train again")
    add_progress(p)


def _add_encode(subparsers: Any) -> None:
    p = add_command(subparsers, "encode", _encode)
    add_store(p)
    add_saes(p, required=True)
    add_layers(p, "layers to encode", "every layer with an SAE")
    add_settings(p, EncodeConfig)
    add_task(p)
    add_overwrite(
        p, "delete the features group first (single process; discards encoded features)", old=("--restart",)
    )
    add_progress(p)


def _add_export(subparsers: Any) -> None:
    from sae_store.train.folder import LAYOUTS

    p = add_command(subparsers, "export-saes", _export)
    add_saes(p, required=True)
    p.add_argument("--layout", required=True, choices=LAYOUTS, help="the layout written (required)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder the SAEs are written under (required)")
    add_layers(p, "layers to export", "every layer with an SAE")
    add_progress(p)


COMMANDS = {"train": _add_train, "encode": _add_encode, "export-saes": _add_export}
