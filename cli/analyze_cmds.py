"""``sae-store analyze <analysis>|all``: one sub-command per registered analysis, and ``all``.

The options of each come from the registry (:mod:`sae_store.analyze.registry`): the settings it
reads, ``--saes`` if it reads the SAEs, the cluster's settings if it runs on one, and its inputs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sae_store.analyze.config import ClusterConfig
from sae_store.analyze.registry import ANALYSES, Analysis
from sae_store.configbase import declared
from sae_store.errors import SaeStoreError

from .options import (
    add_command,
    add_group,
    add_layers,
    add_saes,
    add_settings,
    add_store,
    build,
    layers_from_args,
)

_ALL_HELP = "every analysis in order (those needing two languages only when two are analysed)"


def _words(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


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
        {"type": _ints, "metavar": "F,F", "help": "features to inspect (default: top biased)"},
    ),
    "samples": (
        "--samples",
        {"type": _words, "metavar": "IDS", "help": "samples for the qualitative table, e.g. s1,s2"},
    ),
    "model": (
        "--model",
        {
            "metavar": "DIR",
            "help": "model folder: its tokenizer names tokens; its final norm and unembedding make the "
            "logit lens (default: the store's)",
        },
    ),
    "saes_by_language": (
        "--saes-by-language",
        {
            "nargs": "+",
            "metavar": "LANG=DIR",
            "help": "separately trained SAEs per language (matched by decoder cosine)",
        },
    ),
}


def _run(args: argparse.Namespace) -> int:
    from sae_store.analyze.context import run_analyses

    analyses = list(ANALYSES) if args.which == "all" else [ANALYSES[args.which]]
    configs = {a.config: build(args, a.config) for a in analyses}
    written = run_analyses(
        args.store,
        args.which,
        configs,
        out_dir=args.out,
        cluster=build(args, ClusterConfig) if any(a.cluster for a in analyses) else None,
        features_group=args.features_group,
        layers=list(layers_from_args(args) or ()) or None,
        languages=args.languages,
        saes_spec=getattr(args, "saes", None),
        saes_by_language=_pairs(args.saes_by_language) if getattr(args, "saes_by_language", None) else None,
        features=getattr(args, "features", None),
        samples=getattr(args, "samples", None),
        model=getattr(args, "model", None),
    )
    for path in written:
        print(path)
    return 0


def _options(p: argparse.ArgumentParser, analyses: list[Analysis]) -> None:
    add_store(p, "path of the activation store (with an encoded features group)")
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="folder for the JSON results and figures (default: results/ beside the store, as for "
        "`intervene`, where `report` looks for them)",
    )
    add_layers(p, "layers to analyse", "all encoded")
    p.add_argument("--languages", type=_words, metavar="LANGS", help="languages, e.g. en,ar (default: all)")
    p.add_argument(
        "--features-group",
        default="features",
        metavar="NAME",
        help="group holding the encoded features (default: features)",
    )
    readers = [a for a in analyses if a.saes != "no"]
    if readers:
        optional = [a.name for a in readers if a.saes == "optional"]
        add_saes(p, required=False, what=f" (optional for {', '.join(optional)})" if optional else "")
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
