"""``sae-store train`` and ``sae-store encode``: one SAE per layer, then features back into the store."""

from __future__ import annotations

import argparse
from typing import Any

from sae_store.arraytask import task_layer
from sae_store.selection import format_ranges
from sae_store.train.config import DataConfig, EncodeConfig, RunConfig, SaeConfig, TrainerConfig

from .options import (
    add_command,
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
    $SLURM_ARRAY_TASK_ID (one array task per layer).
    """
    # Imported here so that `sae-store --help` does not pay for importing torch.
    from sae_store.store import open_store
    from sae_store.train.discovery import dead_text
    from sae_store.train.run import train_layer

    layer = task_layer(args.layer)
    config = run_config(args, layer)
    store = open_store(args.store)
    result = train_layer(
        store, config, args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress
    )
    if result.skipped:
        print(f"layer {layer}: {result.folder} already holds a trained SAE; nothing to do")
        return 0
    m = result.metrics
    resumed = f" (resumed from step {result.resumed_from})" if result.resumed_from is not None else ""
    print(
        f"layer {layer}: saved {result.folder}{resumed}; held-out: explained variance "
        f"{m.get('explained_variance', float('nan')):.3f}, L0 {m.get('l0', float('nan')):.1f}, "
        f"{dead_text(m, 'dead_fraction')}; {dead_text(m, 'dead_fraction_train_window')}"
    )
    return 0


def _encode(args: argparse.Namespace) -> int:
    """Encode activations with the trained SAEs into the store's features group.

    Per (layer, language, sample, feature): mean and max of the latent over the sample's tokens of the chosen
    roles and the fraction of them where it is active. Resumable; array tasks (--task-index/--task-count,
    default from SLURM) own contiguous runs of shard blocks.
    """
    from sae_store.store import open_store
    from sae_store.train.discovery import find_saes
    from sae_store.train.encode import encode_features

    config = build(args, EncodeConfig)
    layers = layers_from_args(args)
    index, count = task_from_args(args)
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
    print(
        f"encoded {result.encoded} (layer, language, block) units into {store.path}/features "
        f"(layers {list(result.layers)}, task {index + 1}/{count}); {result.skipped} were already complete"
    )
    without = [layer for layer in store.layout.layers if layer not in saes]
    if layers is None and without:
        print(
            f"not encoded: layers {format_ranges(without, ',')} have no SAE in {args.saes!r}; train them "
            f"(`sae-store train {store.path} --layer L --out {args.saes}`) and run encode again"
        )
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
    for layer, folder in written.items():
        print(f"layer {layer}: {folder}")
    return 0


def _add_train(subparsers: Any) -> None:
    p = add_command(subparsers, "train", _train)
    add_store(p)
    add_layer(p)
    p.add_argument(
        "--out", required=True, metavar="DIR", help="folder of SAEs; this layer's goes to <out>/layer_<L>"
    )
    add_settings(p, SaeConfig, title="SAE")
    add_settings(p, DataConfig, title="training data")
    add_settings(p, TrainerConfig, title="optimisation")
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
    from sae_store.train.export import LAYOUTS

    p = add_command(subparsers, "export-saes", _export)
    add_saes(p, required=True)
    p.add_argument("--layout", required=True, choices=LAYOUTS, help="the layout written")
    p.add_argument("--out", required=True, metavar="DIR", help="folder the SAEs are written under")
    add_layers(p, "layers to export", "every layer with an SAE")
    add_progress(p)


COMMANDS = {"train": _add_train, "encode": _add_encode, "export-saes": _add_export}
