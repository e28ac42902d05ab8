"""``sae-store caption``, ``intervene`` and ``intervene-summary``: the model's own captions, and causal
edits of SAE features inside the running model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sae_store.arraytask import task_layer
from sae_store.intervene.config import CaptionConfig, InterventionConfig
from sae_store.models.config import ModelRunConfig

from .options import (
    add_command,
    add_images,
    add_languages,
    add_layer,
    add_model,
    add_overwrite,
    add_saes,
    add_settings,
    add_store,
    build,
)


def _languages(text: str | None) -> list[str] | None:
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


def _caption(args: argparse.Namespace) -> int:
    """Generate the model's own caption for every sample and language (resumable).

    Greedy captions per (language, sample) with male/female term counts, stored in the store's 'generation'
    group: the behavioural baseline of the interventions.
    """
    from sae_store.intervene.generation import caption_store
    from sae_store.intervene.run import load_store_model
    from sae_store.store import open_store

    store = open_store(args.store)
    summary = caption_store(
        store,
        load_store_model(store, args.model, build(args, ModelRunConfig)),
        build(args, CaptionConfig),
        languages=_languages(args.languages),
        images_dir=args.images,
        overwrite=args.overwrite,
    )
    print(f"generated {summary.generated} captions ({summary.skipped} already stored) in {args.store}")
    for lang in summary.male_terms:
        print(f"  {lang}: {summary.male_terms[lang]} male and {summary.female_terms[lang]} female terms")
    return 0


def _intervene(args: argparse.Namespace) -> int:
    """Ablate, amplify or neutralise SAE features of one layer inside the running model.

    Edit the residual stream after one decoder layer (keeping the SAE's reconstruction error), measure the
    effect on male-vs-female term probabilities of the model's own captions and on regenerated captions,
    against random feature sets of the same size. One layer per run; as a SLURM array (--array=<layers>) the
    layer is the task id.
    """
    from sae_store.intervene.run import intervene_store, load_layer_sae, load_store_model
    from sae_store.store import open_store

    layer = task_layer(args.layer)
    config = build(args, InterventionConfig)
    store = open_store(args.store)
    loaded = load_store_model(store, args.model, build(args, ModelRunConfig))
    out = args.out or Path(args.store).resolve().parent / "results"
    outcome = intervene_store(
        store,
        loaded,
        load_layer_sae(args.saes, layer, device=loaded.device),
        layer=layer,
        config=config,
        out_dir=out,
        languages=_languages(args.languages),
        key=args.name,
        images_dir=args.images,
    )
    s = outcome.summary
    lo, hi = s["differential_ci"]
    line = f"{outcome.key} layer {layer}: differential {s['differential']:+.4f} [{lo:+.4f}, {hi:+.4f}]"
    if "random_differential" in s:
        ratio = s["targeted_random_ratio"]
        line += f", random controls {s['random_differential']:+.4f}, targeted/random {ratio:.2f}"
    print(line)
    print(f"results: {args.store}/{outcome.group}, {outcome.json_path}, {outcome.cross_layer_path}")
    return 0


def _summary(args: argparse.Namespace) -> int:
    """Gather per-layer intervention results into cross_layer_results.json.

    Rebuild OUT/cross_layer_results.json from OUT/intervene/*.json (run it after an array job).
    """
    from sae_store.intervene.results import write_cross_layer

    path = write_cross_layer(args.out)
    payload = json.loads(path.read_text(encoding="utf-8"))
    for key, layers in payload.items():
        print(f"{key}: layers {', '.join(layers)}")
    print(f"wrote {path}")
    return 0


def _model_options(p: argparse.ArgumentParser) -> None:
    add_store(p)
    add_model(p)
    add_images(p)
    add_languages(p, "languages to use", "all of the store's")
    add_settings(p, ModelRunConfig)


def _add_caption(subparsers: Any) -> None:
    p = add_command(subparsers, "caption", _caption)
    _model_options(p)
    add_settings(p, CaptionConfig)
    add_overwrite(p, "generate every caption again")


def _add_intervene(subparsers: Any) -> None:
    p = add_command(subparsers, "intervene", _intervene)
    _model_options(p)
    add_saes(p, required=True)
    add_layer(p)
    add_settings(p, InterventionConfig, title="experiment")
    p.add_argument(
        "--n-boot", dest="bootstrap", type=int, help=argparse.SUPPRESS
    )  # the old name, one release
    p.add_argument("--name", metavar="KEY", help="result key (default: e.g. male_biased_ablation)")
    p.add_argument(
        "--out", type=Path, metavar="DIR", help="JSON results folder (default: results/ beside the store)"
    )


def _add_summary(subparsers: Any) -> None:
    p = add_command(subparsers, "intervene-summary", _summary)
    p.add_argument("out", type=Path, metavar="OUT", help="the results folder given to `intervene --out`")


COMMANDS = {"caption": _add_caption, "intervene": _add_intervene, "intervene-summary": _add_summary}
