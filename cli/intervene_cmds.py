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
    add_images,
    add_languages,
    add_layer,
    add_model,
    add_overwrite,
    add_results,
    add_saes,
    add_settings,
    add_store,
    build,
    languages_from_args,
    results_from_args,
)
from .parser import add_command, add_old_name, show


def _caption(args: argparse.Namespace) -> int:
    """Generate the model's own caption for every sample and language (resumable).

    Greedy captions per (language, sample) with male/female term counts, stored in the store's 'generation'
    group: the behavioural baseline of the interventions.
    """
    model_run, config, languages = (
        build(args, ModelRunConfig),
        build(args, CaptionConfig),
        languages_from_args(args),
    )
    from sae_store.intervene.generation import caption_store
    from sae_store.intervene.run import load_store_model
    from sae_store.store import open_store

    store = open_store(args.store)
    summary = caption_store(
        store,
        load_store_model(store, args.model, model_run),
        config,
        languages=languages,
        images_dir=args.images,
        overwrite=args.overwrite,
    )
    lines = [f"generated {summary.generated} captions ({summary.skipped} already stored) in {args.store}"]
    for lang in summary.male_terms:
        lines.append(
            f"  {lang}: {summary.male_terms[lang]} male and {summary.female_terms[lang]} female terms"
        )
    data = {"store": args.store, "generated": summary.generated, "skipped": summary.skipped,
            "male_terms": summary.male_terms, "female_terms": summary.female_terms}  # fmt: skip
    show(args, data, lines)
    return 0


def _intervene(args: argparse.Namespace) -> int:
    """Ablate, amplify or neutralise SAE features of one layer inside the running model.

    Edit the residual stream after one decoder layer (keeping the SAE's reconstruction error), measure the
    effect on male-vs-female term probabilities of the model's own captions and on regenerated captions,
    against random feature sets of the same size. One layer per run; as a SLURM array (--array=<layers>) the
    layer is the task id.
    """
    layer = task_layer(args.layer)
    config, model_run, languages = (
        build(args, InterventionConfig),
        build(args, ModelRunConfig),
        languages_from_args(args),
    )
    from sae_store.intervene.run import intervene_store, load_layer_sae, load_store_model
    from sae_store.store import open_store

    store = open_store(args.store)
    loaded = load_store_model(store, args.model, model_run)
    outcome = intervene_store(
        store,
        loaded,
        load_layer_sae(args.saes, layer, device=loaded.device),
        layer=layer,
        config=config,
        out_dir=results_from_args(args),
        languages=languages,
        key=args.name,
        images_dir=args.images,
    )
    s = outcome.summary
    lo, hi = s["differential_ci"]
    line = f"{outcome.key} layer {layer}: differential {s['differential']:+.4f} [{lo:+.4f}, {hi:+.4f}]"
    if "random_differential" in s:
        ratio = s["targeted_random_ratio"]
        line += f", random controls {s['random_differential']:+.4f}, targeted/random {ratio:.2f}"
    data = {"key": outcome.key, "layer": layer, "summary": s, "group": f"{args.store}/{outcome.group}",
            "json": outcome.json_path, "cross_layer": outcome.cross_layer_path}  # fmt: skip
    show(args, data, [line, f"results: {data['group']}, {outcome.json_path}, {outcome.cross_layer_path}"])
    return 0


def _summary(args: argparse.Namespace) -> int:
    """Gather per-layer intervention results into cross_layer_results.json.

    Rebuild RESULTS/cross_layer_results.json from RESULTS/intervene/*.json (run it after an array job).
    """
    from sae_store.intervene.results import write_cross_layer

    path = write_cross_layer(args.results)
    payload = json.loads(path.read_text(encoding="utf-8"))
    lines = [f"{key}: layers {', '.join(layers)}" for key, layers in payload.items()]
    show(args, {"path": path, "layers": payload}, [*lines, f"wrote {path}"])
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
    add_old_name(p, "--n-boot", "--bootstrap")
    p.add_argument(
        "--name",
        metavar="KEY",
        help="result key (default: from the features and mode, e.g. male_biased_ablation)",
    )
    add_results(p, "folder the JSON results are written to (read by `report`)", old="--out")


def _add_summary(subparsers: Any) -> None:
    p = add_command(subparsers, "intervene-summary", _summary)
    p.add_argument(
        "results", type=Path, metavar="RESULTS", help="the results folder of `intervene --results`"
    )


COMMANDS = {"caption": _add_caption, "intervene": _add_intervene, "intervene-summary": _add_summary}
