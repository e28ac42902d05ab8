"""``sae-store init``, ``extract``, ``append`` and ``unlock``: creating and filling the activation store."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import asdict, replace
from typing import Any

from sae_store.errors import ConfigError
from sae_store.extract.config import DEFAULT_PROMPTS, ExtractConfig, parse_prompts
from sae_store.models.config import ModelRunConfig
from sae_store.selection import layer_list, parse_languages, parse_layers
from sae_store.store.blocks import parse_sample_range
from sae_store.store.config import StoreConfig

from .options import (
    add_images,
    add_languages,
    add_layers,
    add_model,
    add_progress,
    add_settings,
    add_store,
    add_task,
    build,
    layers_from_args,
    task_from_args,
)
from .parser import add_command, add_old_name, show


def _init(args: argparse.Namespace) -> int:
    """Create an empty activation store for a samples table and a model.

    Create the store (metadata, labels, token counts; no activations) without loading the model's weights.
    """
    prompts = {
        **parse_prompts(args.prompt),
        **{k: v for k, v in (("en", args.prompt_en), ("ar", args.prompt_ar)) if v is not None},
    }
    known = [*DEFAULT_PROMPTS, *(k for k in prompts if k not in DEFAULT_PROMPTS)]
    languages = parse_languages(args.languages, known) if args.languages else None
    config = build(args, StoreConfig)
    layers_from_args(args)  # the syntax now; the range once the model's layers are known
    from sae_store.data.samples import read_samples
    from sae_store.extract.init import init_store
    from sae_store.models.loader import model_identity

    n_layers = int(model_identity(args.model)["n_layers"])
    layers = parse_layers(args.layers, n_layers, name="--layers") if args.layers else None
    store = init_store(
        args.store,
        read_samples(args.samples),
        args.model,
        layers=layers,
        languages=languages,
        prompts=prompts,
        config=config,
        images_dir=args.images,
    )
    lay = store.layout
    data = {
        "store": store.path,
        "samples": lay.n_samples,
        "layers": list(lay.layers),
        "languages": list(lay.languages),
        "tokens": lay.max_tokens,
        "hidden_size": lay.hidden_size,
        "shard_blocks": lay.n_blocks,
        "samples_per_shard": lay.samples_per_shard,
    }
    show(
        args,
        data,
        f"created {store.path}: {lay.n_samples} samples, {layer_list(lay.layers)}, languages "
        f"{', '.join(lay.languages)}, {lay.max_tokens} tokens x {lay.hidden_size}, {lay.n_blocks} shard "
        f"blocks of {lay.samples_per_shard}",
    )
    return 0


def _extract(args: argparse.Namespace) -> int:
    """Fill the store with residual streams (resumable, array-parallel).

    Run the model once per sample and language, capture every requested layer, and write whole shard blocks.
    Complete blocks are skipped, so rerun after a kill. In an sbatch array each task takes its share of blocks
    from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT.
    """
    model_run = build(args, ModelRunConfig)
    index, count = task_from_args(args)
    config = build(args, ExtractConfig, task_index=index, task_count=count, progress=not args.no_progress)
    if args.sample_range:  # the syntax now; an open end once the store's size is known
        parse_sample_range(args.sample_range, 0, name="--sample-range")
    from sae_store.extract.run import run_extraction
    from sae_store.store import open_store

    store = open_store(args.store)
    if args.sample_range:
        n = store.layout.n_samples
        config = replace(config, sample_range=parse_sample_range(args.sample_range, n, name="--sample-range"))
    model = args.model or store.model_folder
    if not model:
        raise ConfigError("the store records no model folder; pass --model DIR")
    summary = run_extraction(
        store.path,
        model,
        config,
        device=model_run.device,
        dtype=model_run.dtype,
        images_dir=args.images,
        command=shlex.join(["sae-store", *sys.argv[1:]]) if sys.argv else "extract",
    )
    show(args, {"store": store.path, "ok": summary.ok, **asdict(summary)}, summary.render())
    return 0 if summary.ok else 1


def _append(args: argparse.Namespace) -> int:
    """Add new samples to a store (then run `extract` to fill them).

    Grow the sample dimension with the rows of a samples table whose ids are new, under an exclusive lock;
    refuses while extractions run.
    """
    from sae_store.data.samples import read_samples
    from sae_store.extract.append import append_samples

    result = append_samples(args.store, read_samples(args.samples), images_dir=args.images)
    blocks = [(b.start, b.stop) for b in result.blocks_to_extract]
    data = {"added": list(result.added), "n_before": result.n_before, "n_after": result.n_after,
            "blocks_to_extract": blocks}  # fmt: skip
    show(
        args,
        data,
        f"appended {len(result.added)} samples ({result.n_before} -> {result.n_after}); run `sae-store "
        f"extract` to fill samples {', '.join(f'{a}:{b}' for a, b in blocks)}",
    )
    return 0


def _unlock(args: argparse.Namespace) -> int:
    """Clear a stale append lock left by a killed process (rolling back its append)."""
    from sae_store.store.append import unlock_store

    result = unlock_store(args.store, force=args.force)
    show(args, result.to_dict(), result.lines())
    return 0


def _add_init(subparsers: Any) -> None:
    p = add_command(subparsers, "init", _init)
    add_store(p, "folder to create")
    p.add_argument(
        "--samples",
        required=True,
        metavar="CSV",
        help="samples table written by `sae-store prepare` (required)",
    )
    add_model(p, required=True, help="local model folder")
    add_images(p, "folder the image paths are relative to", "the CSV's image_path column")
    add_layers(p, "layers to store", "all of the model's")
    add_languages(p, "language keys", "every prompt")
    p.add_argument("--prompt-en", metavar="TEXT", help="English prompt (default: the study's)")
    p.add_argument("--prompt-ar", metavar="TEXT", help="Arabic prompt (default: the study's)")
    p.add_argument(
        "--prompt",
        action="append",
        default=[],
        metavar="KEY=TEXT",
        help="prompt for any language key (repeatable), e.g. fr='Décris la personne ...' (default: the "
        "study's en and ar prompts)",
    )
    add_settings(p, StoreConfig, title="storage")


def _add_extract(subparsers: Any) -> None:
    p = add_command(subparsers, "extract", _extract)
    add_store(p, "the store made by `sae-store init`")
    add_model(p)
    add_settings(p, ModelRunConfig, ExtractConfig)
    add_task(p)
    p.add_argument(
        "--sample-range", metavar="A:B", help="only samples A:B, whole shard blocks (default: every sample)"
    )
    add_old_name(p, "--samples", "--sample-range")  # --samples is a samples table everywhere else
    add_images(p)
    add_progress(p)


def _add_append(subparsers: Any) -> None:
    p = add_command(subparsers, "append", _append)
    add_store(p)
    p.add_argument(
        "--samples", required=True, metavar="CSV", help="samples table of the new images (required)"
    )
    add_images(p, "folder to check the new images in")


def _add_unlock(subparsers: Any) -> None:
    p = add_command(subparsers, "unlock", _unlock)
    add_store(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="also clear locks and claims of another host (each one is listed)",
    )


COMMANDS = {"init": _add_init, "extract": _add_extract, "append": _add_append, "unlock": _add_unlock}
