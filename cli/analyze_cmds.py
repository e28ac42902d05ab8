"""``sae-store analyze <analysis>|all``: one sub-command per registered analysis, and ``all``.

The options of each come from the registry (:mod:`sae_store.analyze.registry`): the settings it
reads, ``--saes`` if it reads the SAEs, the cluster's settings if it runs on one, and its inputs.
"""

from __future__ import annotations

import argparse
from typing import Any

from sae_store.analyze.config import ClusterConfig
from sae_store.analyze.registry import ANALYSES, Analysis
from sae_store.configbase import declared
from sae_store.errors import SaeStoreError

from .options import (
    add_languages,
    add_layers,
    add_results,
    add_saes,
    add_settings,
    add_store,
    build,
    languages_from_args,
    layers_from_args,
    parse_words,
)
from .parser import add_command, add_group, add_old_name, show

_ALL_HELP = "every analysis in order (those needing two languages only when two are analysed)"


def _ints(text: str) -> list[int]:
    # feature indices (not layers: --layers takes the layer syntax of every command)
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _pairs(items: list[str]) -> dict[str, str]:
    bad = [x for x in items if "=" not in x]
    if bad or len(items) != 2:
        raise SaeStoreError(
            f"--saes-by-language takes two LANG=DIR items (e.g. en=saes_en ar=saes_ar), got {items!r}"
        )
    return {lang: folder for lang, folder in (x.split("=", 1) for x in items)}


_INPUTS: dict[str, tuple[str, dict[str, Any]]] = {
    "features": (
        "--features",
        {"type": _ints, "metavar": "N,N,...", "help": "features to inspect (default: top biased)"},
    ),
    "samples": (
        "--sample-ids",
        {"metavar": "IDS", "help": "samples for the qualitative table, e.g. s1,s2 (default: random ones)"},
    ),
    "model": (
        "--model",
        {"metavar": "DIR", "help": "model folder whose tokenizer names tokens (default: the store's)"},
    ),
    "saes_by_language": (
        "--saes-by-language",
        {
            "nargs": "+",
            "metavar": "LANG=DIR",
            "help": "separately trained SAEs per language, matched by decoder cosine (default: --saes)",
        },
    ),
}


def _run(args: argparse.Namespace) -> int:
    analyses = list(ANALYSES) if args.which == "all" else [ANALYSES[args.which]]
    configs = {a.config: build(args, a.config) for a in analyses}
    cluster = build(args, ClusterConfig) if any(a.cluster for a in analyses) else None
    context = {
        "layers": list(layers_from_args(args) or ()) or None,
        "languages": languages_from_args(args),
        "saes_spec": getattr(args, "saes", None),
        "saes_by_language": _pairs(args.saes_by_language)
        if getattr(args, "saes_by_language", None)
        else None,
        "features": getattr(args, "features", None),
        "samples": parse_words(args.sample_ids, "--sample-ids")
        if getattr(args, "sample_ids", None)
        else None,
        "model": getattr(args, "model", None),
    }
    from sae_store.analyze.context import run_analyses

    written = run_analyses(
        args.store,
        args.which,
        configs,
        out_dir=args.results,
        cluster=cluster,
        features_group=args.features_group,
        **context,
    )
    show(args, {"written": written}, [str(p) for p in written])
    return 0


def _options(p: argparse.ArgumentParser, analyses: list[Analysis]) -> None:
    add_store(p, "path of the activation store (with an encoded features group)")
    add_results(p, "folder the JSON results and figures are written to (read by `report`)", old="--out")
    add_layers(p, "layers to analyse", "all encoded")
    add_languages(p, "languages", "all")
    p.add_argument(
        "--features-group",
        default="features",
        metavar="NAME",
        help="group holding the encoded features (default: features)",
    )
    needing = [a.name for a in analyses if a.saes == "required"]
    if any(a.saes != "no" for a in analyses):
        add_saes(p, required=False, default=f"none; needed by {', '.join(needing)}" if needing else "none")
    seen: set[type] = set()
    for a in analyses:
        if a.config in seen:
            continue
        seen.add(a.config)
        users = [b for b in analyses if b.config is a.config]
        read = {name for b in users for name in (b.reads or [f.name for f in declared(b.config)])}
        exclude = [f.name for f in declared(a.config) if f.name not in read]
        add_settings(p, a.config, exclude=exclude, title=", ".join(b.name for b in users))
    for name in dict.fromkeys(i for a in analyses for i in a.inputs):
        flag, kw = _INPUTS[name]
        p.add_argument(flag, **kw)
        if flag == "--sample-ids":  # --samples is a samples table everywhere else
            add_old_name(p, "--samples", flag)
    if any(a.cluster for a in analyses):
        add_settings(p, ClusterConfig, title="cluster")


def _add(subparsers: Any) -> None:
    sub = add_group(
        subparsers,
        "analyze",
        "statistics and figures from encoded features",
        description="Analyses of gender bias in SAE features; results go to the store's "
        "analysis group and to JSON files in --out.",
        dest="which",
    )
    for analysis in [*ANALYSES, None]:
        name = analysis.name if analysis is not None else "all"
        help_text = analysis.help if analysis is not None else _ALL_HELP
        p = add_command(sub, name, _run, help=help_text)
        _options(p, [analysis] if analysis is not None else list(ANALYSES))


COMMANDS = {"analyze": _add}
