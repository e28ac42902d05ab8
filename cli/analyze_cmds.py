"""``sae-store analyze bias|crosslingual|crosslayer|interpret|visual|qualitative|all``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sae_store.errors import SaeStoreError

from .options import add_layers

log = logging.getLogger("sae_store.analyze")


def _ints(text: str) -> list[int]:
    # feature indices (not layers: --layers takes the layer syntax of every command)
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _words(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _pairs(items: list[str]) -> dict[str, str]:
    bad = [x for x in items if "=" not in x]
    if bad or len(items) != 2:
        raise SaeStoreError(
            f"--saes-by-language takes two LANG=DIR items (e.g. en=saes_en ar=saes_ar), got {items!r}"
        )
    return {lang: folder for lang, folder in (x.split("=", 1) for x in items)}


# ---------------------------------------------------------------- SAEs (the only place they are loaded)


class _TorchEncoder:
    """Adapts a loaded SAE module to the analyses' ``Encoder``: numpy in, numpy out."""

    def __init__(self, sae: Any) -> None:
        self.sae = sae

    def __call__(self, x_ND: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.sae.encode(torch.as_tensor(x_ND, dtype=torch.float32)).numpy()


def _load_saes(folder: Path, layers: list[int], inp: Any) -> dict[int, Any]:
    """The SAE module of each layer in ``folder`` (any layout ``find_saes`` reads), checked against the
    store."""
    from sae_store.analyze.data import check_d_in
    from sae_store.train.formats import load_sae
    from sae_store.train.pretrained import find_saes

    out = {}
    n_feat = inp.features.sizes["feature"]
    for layer, path in find_saes(folder, layers).items():
        sae = load_sae(path).sae.eval()
        check_d_in(sae.d_in, inp.store, f"the SAE {str(path)!r}")
        if sae.d_sae != n_feat:
            raise SaeStoreError(
                f"the SAE {str(path)!r} has d_sae={sae.d_sae} but the features group has {n_feat} features; "
                "use the SAEs the features were encoded with"
            )
        out[layer] = sae
    return out


def _decoders(saes: dict[int, Any]) -> dict[int, np.ndarray]:
    return {layer: sae.W_dec.detach().cpu().numpy() for layer, sae in saes.items()}


def _token_decoder(args: argparse.Namespace, store: Any) -> Callable[[int], str] | None:
    """Token id -> text with the model's tokenizer (``--model`` or the store's model folder), if it loads."""
    from sae_store.models.loader import load_processor

    model = args.model or store.attrs.get("model", {}).get("name_or_path")
    if not model or not Path(model).is_dir():
        log.info("no tokenizer (pass --model DIR): tokens are shown by id")
        return None
    tokenizer = load_processor(model).tokenizer
    return lambda token_id: str(tokenizer.decode([token_id]))


# ---------------------------------------------------------------- configs from options


def _cluster(args: argparse.Namespace) -> Any:
    from sae_store.analyze.config import ClusterConfig

    return ClusterConfig(
        kind=args.cluster, workers=args.workers, threads_per_worker=args.threads_per_worker,
        memory_per_worker=args.worker_memory, slurm_queue=args.slurm_queue, slurm_account=args.slurm_account,
        slurm_walltime=args.slurm_walltime, slurm_directives=tuple(args.slurm_directive),
    )  # fmt: skip


def _bias_config(args: argparse.Namespace) -> Any:
    from sae_store.analyze.config import BiasConfig

    return BiasConfig(
        statistic=args.statistic, test=args.test, alpha=args.alpha, correction=args.correction,
        min_per_group=args.min_per_group, top_n=args.top_n, bootstrap=args.bootstrap,
        permutations=args.permutations, allow_incomplete=args.allow_incomplete, seed=args.seed,
    )  # fmt: skip


def _crosslingual_config(args: argparse.Namespace) -> Any:
    from sae_store.analyze.config import CrossLingualConfig

    return CrossLingualConfig(
        statistic=args.statistic, min_per_group=args.min_per_group, top_k=args.top_k,
        permutations=args.overlap_permutations, bootstrap=args.rho_bootstrap, seed=args.seed,
    )  # fmt: skip


def _crosslayer_config(args: argparse.Namespace) -> Any:
    from sae_store.analyze.config import CrossLayerConfig

    return CrossLayerConfig(
        statistic=args.statistic, min_per_group=args.min_per_group, folds=args.folds, C=args.probe_c,
        raw_probe=not args.no_raw_probe, roles=tuple(args.roles), lineage_top=args.lineage_top,
        seed=args.seed,
    )  # fmt: skip


def _inspect_config(args: argparse.Namespace) -> Any:
    from sae_store.analyze.config import InspectConfig

    return InspectConfig(
        n_features=args.n_features, top_k=args.top_samples, rank_by=args.rank_by, bins=args.bins,
        n_samples=args.n_samples, features_per_sample=args.features_per_sample, image_size=args.image_size,
        seed=args.seed,
    )  # fmt: skip


# ---------------------------------------------------------------- commands


def _run(args: argparse.Namespace) -> int:
    from sae_store.analyze import pipeline as P
    from sae_store.analyze.cluster import open_cluster
    from sae_store.analyze.config import ClusterConfig
    from sae_store.config import parse_layer_spec

    inp = P.open_inputs(args.store, args.features_group)
    if args.out is None:
        args.out = Path(args.store).resolve().parent / "results"
    steps = list(_HELP)[:-1] if args.which == "all" else [args.which]
    if args.which == "all" and len(args.languages or inp.features.language.values) < 2:
        log.info("crosslingual skipped: only one language is analysed")
        steps.remove("crosslingual")
    layers = list(parse_layer_spec(args.layers, name="--layers")) if args.layers is not None else None
    analysed = layers if layers is not None else [int(v) for v in inp.features.layer.values]
    need_saes = {"interpret", "visual"} & set(steps) or ({"crosslayer"} & set(steps) and args.saes)
    if need_saes and args.saes is None:
        raise SaeStoreError(
            f"`analyze {args.which}` needs the SAEs: pass --saes DIR (with layer_<L> folders)"
        )
    saes = _load_saes(args.saes, analysed, inp) if args.saes is not None and need_saes else {}
    written: list[Path] = []
    with open_cluster(_cluster(args) if _STATS & set(steps) else ClusterConfig(kind="none")) as client:
        kw: dict[str, Any] = {"layers": layers, "languages": args.languages}
        if "bias" in steps:
            written.append(P.bias_step(inp, _bias_config(args), args.out, client=client, **kw))
        if "crosslingual" in steps:
            decoders = None
            if args.saes_by_language:
                pair = _pairs(args.saes_by_language)
                langs = args.languages or list(pair)
                per = {lang: _decoders(_load_saes(Path(pair[lang]), analysed, inp)) for lang in langs[:2]}
                decoders = {layer: (per[langs[0]][layer], per[langs[1]][layer]) for layer in analysed}
            written.append(
                P.crosslingual_step(
                    inp, _crosslingual_config(args), args.out, decoders=decoders, client=client, **kw
                )
            )
        if "crosslayer" in steps:
            written.append(
                P.crosslayer_step(
                    inp,
                    _crosslayer_config(args),
                    args.out,
                    decoders=_decoders(saes) if saes else None,
                    client=client,
                    **kw,
                )
            )
    config = _inspect_config(args) if {"interpret", "visual", "qualitative"} & set(steps) else None
    if config is not None and {"interpret", "visual"} & set(steps):
        encoders = {layer: _TorchEncoder(sae) for layer, sae in saes.items()}
        tops = P.top_samples_step(inp, config, encoders=encoders, given=args.features, **kw)
        if "interpret" in steps:
            written.append(
                P.interpret_step(inp, tops, config, args.out, decode=_token_decoder(args, inp.store))
            )
        if "visual" in steps:
            written.append(P.visual_step(inp, tops, config, args.out))
    if config is not None and "qualitative" in steps:
        written.append(P.qualitative_step(inp, config, args.out, samples=args.samples, **kw))
    for path in written:
        print(path)
    return 0


def _common(p: argparse.ArgumentParser, which: str) -> None:
    """The options of ``analyze <which>``: shared ones, then only the groups its analyses read."""
    uses = set(_HELP) if which == "all" else {which}
    p.add_argument("store", help="path of the activation store (with an encoded features group)")
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
        "--features-group", default="features", metavar="NAME", help="group holding the encoded features"
    )
    if uses & _STATS:
        p.add_argument(
            "--statistic",
            choices=("mean", "max", "frac"),
            default="mean",
            help="per-sample summary of a feature over its tokens",
        )
        p.add_argument(
            "--min-per-group",
            type=int,
            default=10,
            metavar="N",
            help="fewest male and female samples to test (at least 9)",
        )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of every resampling")
    if uses & {"crosslayer", "interpret", "visual"}:
        optional = " (optional for crosslayer: decoder lineage)" if "crosslayer" in uses else ""
        p.add_argument(
            "--saes",
            type=Path,
            metavar="DIR",
            help=f"folder of layer_<L> SAE folders (`sae-store train --out`){optional}",
        )
    else:
        p.set_defaults(saes=None)
    if "bias" in uses:
        g = p.add_argument_group("bias")
        g.add_argument(
            "--test", choices=("welch", "mannwhitney"), default="welch", help="test giving q-values"
        )
        g.add_argument("--alpha", type=float, default=0.05, help="false discovery rate")
        g.add_argument(
            "--correction",
            choices=("layer_language", "global"),
            default="layer_language",
            help="Benjamini-Hochberg family: each layer and language, or all together",
        )
        g.add_argument(
            "--top-n", type=int, default=50, metavar="N", help="features listed per direction (0 = all)"
        )
        g.add_argument(
            "--bootstrap", type=int, default=1000, metavar="B", help="bootstrap resamples for CIs of d"
        )
        g.add_argument(
            "--permutations", type=int, default=0, metavar="N", help="label permutations for the null"
        )
        g.add_argument(
            "--allow-incomplete", action="store_true", help="analyse layers whose encoding is unfinished"
        )
    if "crosslingual" in uses:
        g = p.add_argument_group("crosslingual")
        g.add_argument(
            "--top-k", type=int, default=100, metavar="K", help="size of the top biased sets compared"
        )
        g.add_argument(
            "--overlap-permutations", type=int, default=1000, metavar="N", help="overlap null draws"
        )
        g.add_argument(
            "--rho-bootstrap", type=int, default=200, metavar="B", help="bootstrap of the Spearman CI"
        )
        g.add_argument(
            "--saes-by-language",
            nargs="+",
            metavar="LANG=DIR",
            help="separately trained SAEs per language (features are matched by decoder cosine)",
        )
    if "crosslayer" in uses:
        g = p.add_argument_group("crosslayer")
        g.add_argument("--folds", type=int, default=5, help="cross-validation folds of the probes")
        g.add_argument("--probe-c", type=float, default=1.0, metavar="C", help="inverse L2 strength")
        g.add_argument("--no-raw-probe", action="store_true", help="skip the probe on raw pooled activations")
        g.add_argument(
            "--roles",
            type=_words,
            default=["image", "text"],
            metavar="ROLES",
            help="tokens pooled (raw probe)",
        )
        g.add_argument(
            "--lineage-top", type=int, default=20, metavar="N", help="features followed to the next layer"
        )
    if uses & _INSPECT:
        _inspect_options(p, uses)
    if uses & _STATS:
        _cluster_options(p)


def _inspect_options(p: argparse.ArgumentParser, uses: set[str]) -> None:
    # InspectConfig needs every value: options an analysis does not read keep their defaults, unlisted
    g = p.add_argument_group(", ".join(sorted(uses & _INSPECT)))
    interpret, visual, qualitative = {"interpret"}, {"visual"}, {"qualitative"}
    shown: dict[str, tuple[set[str], dict[str, Any]]] = {
        "--features": (
            interpret | visual,
            {"type": _ints, "metavar": "F,F", "help": "features to inspect (default: top biased)"},
        ),
        "--n-features": (
            _INSPECT,
            {"type": int, "default": 5, "metavar": "N", "help": "top biased features per direction"},
        ),
        "--top-samples": (
            interpret | visual,
            {"type": int, "default": 10, "metavar": "K", "help": "samples shown per feature"},
        ),
        "--rank-by": (
            interpret | visual,
            {"choices": ("mean", "max", "frac"), "default": "max", "help": "ranking of samples"},
        ),
        "--bins": (interpret, {"type": int, "default": 30, "help": "histogram bins"}),
        "--image-size": (
            visual,
            {"type": int, "default": 224, "metavar": "PX", "help": "image side under heatmaps"},
        ),
        "--model": (
            interpret,
            {"metavar": "DIR", "help": "model folder whose tokenizer names tokens (default: the store's)"},
        ),
        "--samples": (
            qualitative,
            {"type": _words, "metavar": "IDS", "help": "samples for the qualitative table, e.g. s1,s2"},
        ),
        "--n-samples": (
            qualitative,
            {"type": int, "default": 6, "metavar": "N", "help": "random samples per gender"},
        ),
        "--features-per-sample": (
            qualitative,
            {"type": int, "default": 5, "metavar": "N", "help": "rows per sample"},
        ),
    }
    for flag, (users, kw) in shown.items():
        if users & uses:
            g.add_argument(flag, **kw)
        else:
            p.set_defaults(**{flag[2:].replace("-", "_"): kw.get("default")})


def _cluster_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster")
    g.add_argument(
        "--cluster",
        choices=("local", "slurm", "none"),
        default="local",
        help="dask LocalCluster, SLURMCluster, or none (run here)",
    )
    g.add_argument("--workers", type=int, default=2, metavar="N", help="worker processes or SLURM jobs")
    g.add_argument("--threads-per-worker", type=int, default=1, metavar="N", help="threads of each worker")
    g.add_argument("--worker-memory", default="4GiB", metavar="SIZE", help="memory per worker")
    g.add_argument(
        "--slurm-queue", metavar="PARTITION", help="partition of the worker jobs (--cluster slurm)"
    )
    g.add_argument("--slurm-account", metavar="ACCOUNT", help="account of the worker jobs")
    g.add_argument(
        "--slurm-walltime", default="02:00:00", metavar="HH:MM:SS", help="time limit of the worker jobs"
    )
    g.add_argument(
        "--slurm-directive",
        action="append",
        default=[],
        metavar="LINE",
        help="extra #SBATCH option for worker jobs (repeatable)",
    )


_STATS = {"bias", "crosslingual", "crosslayer"}
_INSPECT = {"interpret", "visual", "qualitative"}


_HELP = {
    "bias": "per-feature gender tests (Welch, Mann-Whitney), Cohen's d, BH q-values, CIs, permutation null",
    "crosslingual": "EN vs AR: Spearman of effect sizes, top-k overlap vs chance, per-sample correlation",
    "crosslayer": "per layer: significant features, max |d|, gender probes; lineage to the next layer",
    "interpret": "top samples, firing tokens and distributions of the most biased features (needs --saes)",
    "visual": "feature activation over the image-token grid, as arrays and heatmap PNGs (needs --saes)",
    "qualitative": "per sample, the most active biased features with interpretations and captions",
    "all": "every analysis in order (crosslingual only with two languages)",
}


def register(subparsers: Any) -> None:
    """Add ``analyze`` and its sub-commands."""
    p = subparsers.add_parser(
        "analyze",
        help="statistics and figures from encoded features",
        description="Analyses of gender bias in SAE features; results go to the store's "
        "analysis group and to JSON files in --out.",
    )
    sub = p.add_subparsers(dest="which", metavar="ANALYSIS", required=True)
    for name, text in _HELP.items():
        q = sub.add_parser(name, help=text, description=text)
        _common(q, name)
        q.set_defaults(func=_run)
