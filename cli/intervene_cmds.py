"""``sae-store caption``, ``intervene`` and ``intervene-summary``: the model's own captions, and causal
edits of SAE features inside the running model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sae_store.errors import ConfigError

from .options import add_device, add_languages, add_overwrite


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _languages(text: str | None) -> list[str] | None:
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


def _load(args: argparse.Namespace, store: Any) -> Any:
    from sae_store.extract.model_info import check_identity
    from sae_store.models.loader import load_model

    model = args.model or store.attrs.get("model", {}).get("name_or_path")
    if not model:
        raise ConfigError("the store records no model folder; pass --model DIR")
    loaded = load_model(model, device=args.device, dtype=args.dtype)
    check_identity(store, loaded.identity)
    return loaded


def _caption(args: argparse.Namespace) -> int:
    from sae_store.intervene.captions import CaptionConfig
    from sae_store.intervene.generation import caption_store
    from sae_store.store import open_store

    store = open_store(args.store)
    config = CaptionConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    summary = caption_store(
        store,
        _load(args, store),
        config,
        languages=_languages(args.languages),
        images_dir=args.images,
        overwrite=args.overwrite,
    )
    print(f"generated {summary.generated} captions ({summary.skipped} already stored) in {args.store}")
    for lang in summary.male_terms:
        print(f"  {lang}: {summary.male_terms[lang]} male and {summary.female_terms[lang]} female terms")
    return 0


def _intervene(args: argparse.Namespace) -> int:
    from sae_store.intervene.experiment import InterventionConfig
    from sae_store.intervene.features import parse_feature_spec
    from sae_store.intervene.run import intervene_store, layer_from_env, load_layer_sae
    from sae_store.store import open_store

    layer = layer_from_env(args.layer)
    spec = parse_feature_spec(args.features)
    config = InterventionConfig(
        mode=args.mode,
        alpha=args.alpha,
        positions=args.positions,
        n_controls=args.controls,
        seed=args.seed,
        n_positions=args.n_positions,
        dose_alphas=args.dose,
        batch_size=args.batch_size,
        regenerate=not args.no_regenerate,
    )
    store = open_store(args.store)
    loaded = _load(args, store)
    out = args.out or Path(args.store).resolve().parent / "results"
    outcome = intervene_store(
        store,
        loaded,
        load_layer_sae(args.saes, layer, device=loaded.device),
        layer=layer,
        spec=spec,
        config=config,
        out_dir=out,
        languages=_languages(args.languages),
        key=args.name,
        rank_language=args.rank_language,
        images_dir=args.images,
        max_samples=args.max_samples,
        max_new_tokens=args.max_new_tokens,
        n_boot=args.bootstrap,
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
    from sae_store.intervene.results import write_cross_layer

    path = write_cross_layer(args.out)
    payload = json.loads(path.read_text(encoding="utf-8"))
    for key, layers in payload.items():
        print(f"{key}: layers {', '.join(layers)}")
    print(f"wrote {path}")
    return 0


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="path of the activation store")
    p.add_argument("--model", metavar="DIR", help="model folder (default: the one recorded in the store)")
    p.add_argument("--images", metavar="DIR", help="images folder (default: the one recorded in the store)")
    add_languages(p, "languages to use", "all of the store's")
    p.add_argument(
        "--batch-size", type=int, default=8, metavar="B", help="samples per forward pass (default 8)"
    )
    add_device(p)
    p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), float32 or bfloat16")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "caption",
        help="generate the model's own caption for every sample and language (resumable)",
        description="Greedy captions per (language, sample) with male/female term counts, stored in the "
        "store's 'generation' group: the behavioural baseline of the interventions.",
    )
    _model_options(p)
    p.add_argument(
        "--max-new-tokens", type=int, default=32, metavar="N", help="caption length limit (default 32)"
    )
    add_overwrite(p, "generate every caption again")
    p.set_defaults(func=_caption)

    p = subparsers.add_parser(
        "intervene",
        help="ablate, amplify or neutralise SAE features of one layer inside the running model",
        description="Edit the residual stream after one decoder layer (keeping the SAE's reconstruction "
        "error), measure the effect on male-vs-female term probabilities of the model's own captions and on "
        "regenerated captions, against random feature sets of the same size. One layer per run; as a SLURM "
        "array (--array=<layers>) the layer is the task id.",
    )
    _model_options(p)
    p.add_argument(
        "--saes", required=True, metavar="DIR", help="SAE folder (layer_<L>/ sub-folders, or one SAE)"
    )
    p.add_argument("--layer", type=int, metavar="L", help="decoder layer (default: $SLURM_ARRAY_TASK_ID)")
    p.add_argument("--mode", required=True, choices=["ablate", "amplify", "neutralise"])
    p.add_argument(
        "--features",
        default="top-male:20",
        metavar="SET",
        help="top-male:N or top-female:N (the N most biased significant features; fewer if fewer are "
        "significant, with a warning) or indices i,j,k (default: top-male:20)",
    )
    p.add_argument("--alpha", type=float, default=2.0, help="amplification factor, > 0 (default 2)")
    p.add_argument(
        "--positions", default="all", choices=["image", "text", "all"], help="tokens edited (default all)"
    )
    p.add_argument(
        "--controls", type=int, default=10, metavar="N", help="random feature sets (0 or >= 10; default 10)"
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of controls and bootstrap")
    p.add_argument(
        "--n-positions", type=int, default=5, metavar="K", help="caption positions of the metric (default 5)"
    )
    p.add_argument(
        "--dose",
        type=_floats,
        default=(0.5, 1.0, 2.0, 4.0, 8.0),
        metavar="A1,A2",
        help="alphas of the dose-response (amplify; default 0.5,1,2,4,8)",
    )
    p.add_argument(
        "--max-new-tokens", type=int, metavar="N", help="regenerated caption length (default: as stored)"
    )
    p.add_argument("--no-regenerate", action="store_true", help="skip regenerating captions (metric b)")
    p.add_argument("--max-samples", type=int, metavar="N", help="use at most N samples, balanced by gender")
    p.add_argument(
        "--rank-language",
        metavar="LANG",
        help="language of the bias ranking for top-male/top-female (default: first)",
    )
    p.add_argument("--name", metavar="KEY", help="result key (default: e.g. male_biased_ablation)")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="B", help="bootstrap resamples of the CIs")
    p.add_argument(
        "--n-boot", type=int, dest="bootstrap", help=argparse.SUPPRESS
    )  # the old name, one release
    p.add_argument(
        "--out", type=Path, metavar="DIR", help="JSON results folder (default: results/ beside the store)"
    )
    p.set_defaults(func=_intervene)

    p = subparsers.add_parser(
        "intervene-summary",
        help="gather per-layer intervention results into cross_layer_results.json",
        description="Rebuild OUT/cross_layer_results.json from OUT/intervene/*.json "
        "(run it after an array job).",
    )
    p.add_argument("out", type=Path, metavar="OUT", help="the results folder given to `intervene --out`")
    p.set_defaults(func=_summary)
