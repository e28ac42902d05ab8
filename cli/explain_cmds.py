"""``sae-store explain``: explanations of features by a language model, scored by detection and fuzzing."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sae_store.autointerp.config import ExplainConfig

from .options import add_layers, add_saes, add_settings, add_store, build, layers_from_args
from .parser import add_command, show


def _explain(args: argparse.Namespace) -> int:
    """Explain features from their examples and score each explanation on held-out examples.

    Examples are drawn as delphi draws them (top activations, activation quantiles, random firing ones)
    in the explain language; the explainer (a local model folder, an OpenAI-compatible URL, or the
    rule-based loopback endpoint) writes one explanation per feature, then scores it by detection and
    fuzzing on held-out examples of every language. Results go to the store's explanations group.
    """
    config = build(args, ExplainConfig)
    given = layers_from_args(args)
    from sae_store.autointerp.run import explain

    entries = explain(
        args.store, args.saes, config, export=args.export, layers=list(given) if given else None
    )
    lines, result = [], []
    for e in entries:
        ba = {lang: s.balanced_accuracy for (lang, m), s in e.scores.items() if m == "detection"}
        shown = ", ".join(f"{lang} {v:.2f}" for lang, v in ba.items())
        lines.append(
            f"layer {e.layer} feature {e.feature}: {e.explanation or '-'} "
            f"[{e.status}; detection {shown or '-'}]"
        )
        result.append(
            {"layer": e.layer, "feature": e.feature, "explanation": e.explanation, "status": e.status,
             "detection_balanced_accuracy": ba}
        )  # fmt: skip
    lines.append(f"{len(entries)} features explained into {args.store}/explanations")
    show(args, {"store": str(args.store), "explanations": result}, lines)
    return 0


def _add(subparsers: Any) -> None:
    p = add_command(subparsers, "explain", _explain)
    add_store(p)
    add_saes(p, required=True)
    add_layers(p, "layers whose features are chosen by significant/top:N", "every layer")
    p.add_argument(
        "--export",
        type=Path,
        metavar="DIR",
        help="also write delphi's explanations/ and scores/ here (default: no export)",
    )
    add_settings(p, ExplainConfig)


COMMANDS = {"explain": _add}
