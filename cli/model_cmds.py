"""``sae-store make-tiny-model``: build the tiny offline Gemma 3 used by tests, the demo and benchmarks."""

from __future__ import annotations

import argparse
from typing import Any

from .options import add_command, add_overwrite


def _make_tiny_model(args: argparse.Namespace) -> int:
    """Build a small random Gemma 3 vision-language model folder (offline).

    Build a random Gemma 3 vision-language model with a real English/Arabic tokenizer, loadable like
    google/gemma-3-4b-it. --n-layers 8 --hidden 512 gives the benchmark size.
    """
    # Imported here so that `sae-store --help` does not pay for importing torch and transformers.
    from sae_store.models.tiny import build_tiny_gemma3

    out = build_tiny_gemma3(
        args.dir, seed=args.seed, num_layers=args.n_layers, hidden_size=args.hidden, overwrite=args.overwrite
    )
    sizes = f"{args.n_layers} layers, hidden {args.hidden}, seed {args.seed}"
    print(f"wrote a tiny Gemma 3 model ({sizes}) to {out}")
    return 0


def _add(subparsers: Any) -> None:
    p = add_command(subparsers, "make-tiny-model", _make_tiny_model)
    p.add_argument("dir", help="folder to write the model into (must be empty unless --overwrite)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the random weights (default: 0)")
    p.add_argument(
        "--n-layers", type=int, default=4, metavar="N", help="number of decoder layers (default: 4)"
    )
    # `--layers SPEC` selects layers everywhere else; the old name of --n-layers works for one release
    p.add_argument("--layers", type=int, dest="n_layers", help=argparse.SUPPRESS)
    p.add_argument("--hidden", type=int, default=64, metavar="N", help="residual stream width (default: 64)")
    add_overwrite(p, "replace a model already in DIR")


COMMANDS = {"make-tiny-model": _add}
