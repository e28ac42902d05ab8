"""``sae-store init``, ``extract``, ``append`` and ``unlock``: creating and filling the activation store."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

from sae_store.extract.config import ExtractConfig
from sae_store.models.config import ModelRunConfig
from sae_store.selection import format_ranges
from sae_store.store.config import StoreConfig

from .options import (
    add_command,
    add_images,
    add_json,
    add_languages,
    add_layers,
    add_model,
    add_progress,
    add_settings,
    add_store,
    add_task,
    build,
    task_from_args,
)


def _init(args: argparse.Namespace) -> int:
    """Create an empty activation store for a samples table and a model.

    Create the store (metadata, labels, token counts; no activations) without loading the model's weights.
    """
    # Imported here so that `sae-store --help` does not pay for importing torch and transformers.
    from sae_store.data.samples import read_samples
    from sae_store.extract.config import DEFAULT_PROMPTS, parse_prompts
    from sae_store.extract.init import init_store
    from sae_store.models.loader import model_identity
    from sae_store.selection import parse_languages, parse_layers

    prompts = {
        **parse_prompts(args.prompt),
        **{k: v for k, v in (("en", args.prompt_en), ("ar", args.prompt_ar)) if v is not None},
    }
    known = [*DEFAULT_PROMPTS, *(k for k in prompts if k not in DEFAULT_PROMPTS)]
    languages = parse_languages(args.languages, known) if args.languages else None
    config = build(args, StoreConfig)
    n_layers = int(model_identity(args.model)["n_layers"])
    layers = parse_layers(args.layers, n_layers) if args.layers else None
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
    print(
        f"created {store.path}: {lay.n_samples} samples, layers {format_ranges(lay.layers)} "
        f"({len(lay.layers)}), languages {list(lay.languages)}, {lay.max_tokens} tokens x {lay.hidden_size}, "
        f"{lay.n_blocks} shard blocks of {lay.samples_per_shard}"
    )
    return 0


def _extract(args: argparse.Namespace) -> int:
    """Fill the store with residual streams (resumable, array-parallel).

    Run the model once per sample and language, capture every requested layer, and write whole shard blocks.
    Complete blocks are skipped, so rerun after a kill. In an sbatch array each task takes its share of blocks
    from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT.
    """
    from sae_store.errors import ConfigError
    from sae_store.extract.run import run_extraction
    from sae_store.store import open_store
    from sae_store.store.blocks import parse_sample_range

    model_run = build(args, ModelRunConfig)
    index, count = task_from_args(args)
    store = open_store(args.store)
    sample_range = parse_sample_range(args.samples, store.layout.n_samples) if args.samples else None
    config = build(
        args,
        ExtractConfig,
        task_index=index,
        task_count=count,
        sample_range=sample_range,
        progress=not args.no_progress,
    )
    model = args.model or store.attrs.get("model", {}).get("name_or_path")
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
    print(summary.render())
    return 0 if summary.ok else 1


def _append(args: argparse.Namespace) -> int:
    """Add new samples to a store (then run `extract` to fill them).

    Grow the sample dimension with the rows of a samples table whose ids are new, under an exclusive lock;
    refuses while extractions run.
    """
    from sae_store.data.samples import read_samples
    from sae_store.extract.append import append_samples

    result = append_samples(args.store, read_samples(args.samples), images_dir=args.images)
    blocks = ", ".join(f"{b.start}:{b.stop}" for b in result.blocks_to_extract)
    print(
        f"appended {len(result.added)} samples ({result.n_before} -> {result.n_after}); "
        f"run `sae-store extract` to fill samples {blocks}"
    )
    return 0


def _unlock(args: argparse.Namespace) -> int:
    """Clear a stale append lock left by a killed process (rolling back its append)."""
    from sae_store.store.append import unlock_store

    result = unlock_store(args.store, force=args.force)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print("\n".join(result.lines()))
    return 0


def _add_init(subparsers: Any) -> None:
    p = add_command(subparsers, "init", _init)
    add_store(p, "folder to create")
    p.add_argument(
        "--samples", required=True, metavar="CSV", help="samples.csv written by `sae-store prepare`"
    )
    p.add_argument("--model", required=True, metavar="DIR", help="local model folder")
    add_images(p, "folder the image paths are relative to (default: from the CSV)")
    add_layers(p, "layers to store", "all of the model's")
    add_languages(p, "language keys", "every prompt")
    p.add_argument("--prompt-en", metavar="TEXT", help="English prompt (default: the study's)")
    p.add_argument("--prompt-ar", metavar="TEXT", help="Arabic prompt (default: the study's)")
    p.add_argument(
        "--prompt",
        action="append",
        default=[],
        metavar="KEY=TEXT",
        help="prompt for any language key (repeatable), e.g. fr='Décris la personne ...'",
    )
    add_settings(p, StoreConfig, title="storage")


def _add_extract(subparsers: Any) -> None:
    p = add_command(subparsers, "extract", _extract)
    add_store(p, "the store made by `sae-store init`")
    add_model(p)
    add_settings(p, ModelRunConfig, ExtractConfig)
    add_task(p)
    p.add_argument("--samples", metavar="A:B", help="only samples A:B (whole shard blocks)")
    add_images(p, "images folder (default: the one recorded at init)")
    add_progress(p)


def _add_append(subparsers: Any) -> None:
    p = add_command(subparsers, "append", _append)
    add_store(p)
    p.add_argument("--samples", required=True, metavar="CSV", help="samples table of the new images")
    add_images(p, "folder to check the new images in (default: the store's)")


def _add_unlock(subparsers: Any) -> None:
    p = add_command(subparsers, "unlock", _unlock)
    add_store(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="also clear locks and claims of another host (each one is listed)",
    )
    add_json(p)


COMMANDS = {"init": _add_init, "extract": _add_extract, "append": _add_append, "unlock": _add_unlock}
