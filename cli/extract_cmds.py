"""``sae-store init``, ``extract``, ``append`` and ``unlock``: creating and filling the activation store."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import get_args

from sae_store.store.config import DEFAULT_COMPRESSOR, PRESET_HELP, Compressor, Precision, Shuffle

from .options import add_device, add_languages, add_layers


def _init(args: argparse.Namespace) -> int:
    # Imported here so that `sae-store --help` does not pay for importing torch and transformers.
    from sae_store.data.samples import read_samples
    from sae_store.extract.config import DEFAULT_PROMPTS, parse_languages, parse_layers, parse_prompts
    from sae_store.extract.init import init_store
    from sae_store.models.loader import model_identity
    from sae_store.store import StoreConfig

    prompts = {
        **parse_prompts(args.prompt),
        **{k: v for k, v in (("en", args.prompt_en), ("ar", args.prompt_ar)) if v is not None},
    }
    known = [*DEFAULT_PROMPTS, *(k for k in prompts if k not in DEFAULT_PROMPTS)]
    languages = parse_languages(args.languages, known) if args.languages else None
    n_layers = int(model_identity(args.model)["n_layers"])
    layers = parse_layers(args.layers, n_layers) if args.layers else None
    config = StoreConfig(
        samples_per_shard=args.samples_per_shard,
        compressor=args.compressor,
        clevel=args.clevel,
        shuffle=args.shuffle,
        precision=args.precision,
    )
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
        f"created {store.path}: {lay.n_samples} samples, layers {lay.layers[0]}..{lay.layers[-1]} "
        f"({len(lay.layers)}), languages {list(lay.languages)}, {lay.max_tokens} tokens x {lay.hidden_size}, "
        f"{lay.n_blocks} shard blocks of {lay.samples_per_shard}"
    )
    return 0


def _extract(args: argparse.Namespace) -> int:
    from sae_store.errors import ConfigError
    from sae_store.extract.config import ExtractConfig, parse_languages, parse_layers, slurm_task
    from sae_store.extract.run import run_extraction
    from sae_store.store import open_store
    from sae_store.store.blocks import parse_sample_range
    from sae_store.store.usage import parse_size

    store = open_store(args.store)
    index, count = slurm_task()
    if args.task_index is not None:
        index = args.task_index
    if args.task_count is not None:
        count = args.task_count
    config = ExtractConfig(
        layers=parse_layers(args.layers, int(store.attrs["model"]["n_layers"])) if args.layers else None,
        languages=parse_languages(args.languages, store.layout.languages) if args.languages else None,
        batch_size=args.batch_size,
        task_index=index,
        task_count=count,
        sample_range=parse_sample_range(args.samples, store.layout.n_samples) if args.samples else None,
        on_nonfinite=args.on_nonfinite,
        quota=parse_size(args.quota) if args.quota else None,
        writer_threads=args.writer_threads,
        progress=not args.no_progress,
    )
    model = args.model or store.attrs.get("model", {}).get("name_or_path")
    if not model:
        raise ConfigError("the store records no model folder; pass --model DIR")
    summary = run_extraction(
        store.path,
        model,
        config,
        device=args.device,
        dtype=args.dtype,
        images_dir=args.images,
        command=shlex.join(["sae-store", *sys.argv[1:]]) if sys.argv else "extract",
    )
    print(summary.render())
    return 0 if summary.ok else 1


def _append(args: argparse.Namespace) -> int:
    from sae_store.data.samples import read_samples
    from sae_store.store.append import append_samples

    result = append_samples(args.store, read_samples(args.samples), images_dir=args.images)
    blocks = ", ".join(f"{b.start}:{b.stop}" for b in result.blocks_to_extract)
    print(
        f"appended {len(result.added)} samples ({result.n_before} -> {result.n_after}); "
        f"run `sae-store extract` to fill samples {blocks}"
    )
    return 0


def _unlock(args: argparse.Namespace) -> int:
    from sae_store.store.append import unlock_store

    for line in unlock_store(args.store, force=args.force).lines():
        print(line)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "init",
        help="create an empty activation store for a samples table and a model",
        description="Create the store (metadata, labels, token counts; no activations) without loading "
        "the model's weights.",
    )
    p.add_argument("store", help="folder to create")
    p.add_argument(
        "--samples", required=True, metavar="CSV", help="samples.csv written by `sae-store prepare`"
    )
    p.add_argument("--model", required=True, metavar="DIR", help="local model folder")
    p.add_argument(
        "--images", metavar="DIR", help="folder the image paths are relative to (default: from CSV)"
    )
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
    p.add_argument(
        "--samples-per-shard",
        type=int,
        default=16,
        metavar="N",
        help="samples per shard file: the unit of work and of writer memory (default 16)",
    )
    presets = "; ".join(f"{name}: {text}" for name, text in PRESET_HELP.items()).replace("%", "%%")
    p.add_argument(
        "--compressor",
        default=DEFAULT_COMPRESSOR,
        choices=get_args(Compressor),
        metavar="NAME",
        help=f"codec preset or codec for activations (default {DEFAULT_COMPRESSOR}: the writer keeps up "
        f"with a GPU). Presets - {presets}. Codecs: blosc-zstd, blosc-lz4, zstd, none (with --clevel, "
        "--shuffle)",
    )
    p.add_argument(
        "--clevel", type=int, metavar="N", help="compression level (default: the preset's or codec's)"
    )
    p.add_argument(
        "--shuffle",
        choices=get_args(Shuffle),
        help="Blosc pre-filter (default: the preset's; byte for a Blosc codec named directly)",
    )
    p.add_argument(
        "--precision",
        default="bf16",
        choices=get_args(Precision),
        help="round stored values to bfloat16 (default) or keep float32",
    )
    p.set_defaults(func=_init)

    p = subparsers.add_parser(
        "extract",
        help="fill the store with residual streams (resumable, array-parallel)",
        description="Run the model once per sample and language, capture every requested layer, and "
        "write whole shard blocks. Complete blocks are skipped, so rerun after a kill. In an sbatch array "
        "each task takes its share of blocks from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT.",
    )
    p.add_argument("store", help="the store made by `sae-store init`")
    p.add_argument("--model", metavar="DIR", help="model folder (default: the one recorded in the store)")
    add_device(p)
    p.add_argument(
        "--dtype", default="auto", help="auto (bfloat16 on GPU, float32 on CPU), bfloat16 or float32"
    )
    p.add_argument(
        "--batch-size", type=int, default=8, metavar="B", help="samples per forward pass (default 8)"
    )
    p.add_argument(
        "--task-index", type=int, metavar="I", help="this task (default $SLURM_ARRAY_TASK_ID or 0)"
    )
    p.add_argument("--task-count", type=int, metavar="N", help="tasks (default $SLURM_ARRAY_TASK_COUNT or 1)")
    p.add_argument("--samples", metavar="A:B", help="only samples A:B (whole shard blocks)")
    add_layers(p, "only these stored layers", "all")
    add_languages(p, "only these stored languages", "all")
    p.add_argument(
        "--on-nonfinite",
        default="error",
        choices=["error", "record"],
        help="stop on NaN/inf activations (default) or store and count them",
    )
    p.add_argument(
        "--quota", metavar="SIZE", help="refuse to start if the store would outgrow SIZE, e.g. 500G"
    )
    p.add_argument(
        "--writer-threads",
        type=int,
        metavar="N",
        help="threads encoding activations while the model runs (default: the cores left after the "
        "model - all but one beside a GPU, those torch leaves free on a CPU)",
    )
    p.add_argument("--images", metavar="DIR", help="images folder (default: the one recorded at init)")
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar on a terminal (log lines only)"
    )
    p.set_defaults(func=_extract)

    p = subparsers.add_parser(
        "append",
        help="add new samples to a store (then run `extract` to fill them)",
        description="Grow the sample dimension with the rows of a samples table whose ids are new, under an "
        "exclusive lock; refuses while extractions run.",
    )
    p.add_argument("store", help="the store")
    p.add_argument("--samples", required=True, metavar="CSV", help="samples table of the new images")
    p.add_argument("--images", metavar="DIR", help="folder to check the new images in (default: the store's)")
    p.set_defaults(func=_append)

    p = subparsers.add_parser(
        "unlock",
        help="clear a stale append lock left by a killed process (rolling back its append)",
    )
    p.add_argument("store", help="the store")
    p.add_argument(
        "--force",
        action="store_true",
        help="also clear locks and claims of another host (each one is listed)",
    )
    p.set_defaults(func=_unlock)
