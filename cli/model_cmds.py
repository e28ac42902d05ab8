"""``sae-store make-tiny-model``: build the tiny offline Gemma 3 used by tests, the demo and benchmarks."""

from __future__ import annotations

import argparse


def _make_tiny_model(args: argparse.Namespace) -> int:
    # Imported here so that `sae-store --help` does not pay for importing torch and transformers.
    from sae_store.models.tiny import build_tiny_gemma3

    out = build_tiny_gemma3(
        args.dir,
        seed=args.seed,
        num_layers=args.layers,
        hidden_size=args.hidden,
        overwrite=args.overwrite,
    )
    print(
        f"wrote a tiny Gemma 3 model ({args.layers} layers, hidden {args.hidden}, seed {args.seed}) to {out}"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "make-tiny-model",
        help="build a small random Gemma 3 vision-language model folder (offline)",
        description="Build a random Gemma 3 vision-language model with a real English/Arabic tokenizer, "
        "loadable like google/gemma-3-4b-it. --layers 8 --hidden 512 gives the benchmark size.",
    )
    p.add_argument("dir", help="folder to write the model into (must be empty unless --overwrite)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    p.add_argument("--layers", type=int, default=4, help="decoder layers (default 4)")
    p.add_argument("--hidden", type=int, default=64, help="residual stream width (default 64)")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in DIR")
    p.set_defaults(func=_make_tiny_model)
