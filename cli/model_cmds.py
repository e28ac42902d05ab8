"""``sae-store make-tiny-model``: build the tiny offline Gemma 3 used by tests, the demo and benchmarks."""

from __future__ import annotations

import argparse
from typing import Any

from sae_store.models.config import TinyModelConfig

from .options import add_overwrite, add_settings, build
from .parser import add_command, add_old_name, show


def _make_tiny_model(args: argparse.Namespace) -> int:
    """Build a small random Gemma 3 vision-language model folder (offline).

    Build a random Gemma 3 vision-language model with a real English/Arabic tokenizer, loadable like
    google/gemma-3-4b-it. --n-layers 8 --hidden 512 gives the benchmark size.
    """
    config = build(args, TinyModelConfig)
    from sae_store.models.tiny import build_tiny_gemma3

    out = build_tiny_gemma3(
        args.dir,
        seed=config.seed,
        num_layers=config.num_layers,
        hidden_size=config.hidden_size,
        overwrite=args.overwrite,
    )
    sizes = f"{config.num_layers} layers, hidden {config.hidden_size}, seed {config.seed}"
    show(args, {"model": out, **config.to_dict()}, f"wrote a tiny Gemma 3 model ({sizes}) to {out}")
    return 0


def _add(subparsers: Any) -> None:
    p = add_command(subparsers, "make-tiny-model", _make_tiny_model)
    p.add_argument(
        "dir", metavar="DIR", help="folder to write the model into (must be empty unless --overwrite)"
    )
    add_settings(p, TinyModelConfig)
    # `--layers SPEC` selects layers everywhere else; the old name of --n-layers works for one release
    add_old_name(p, "--layers", "--n-layers")
    add_overwrite(p, "replace a model already in DIR")


COMMANDS = {"make-tiny-model": _add}
