"""``analyze crosslingual`` on a store: one dask task per layer comparing two languages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import xarray as xr
from dask import delayed
from distributed import Client

from sae_store.analyze.cluster import compute_tasks
from sae_store.analyze.config import CrossLingualConfig
from sae_store.analyze.crosslingual import (
    RHO_CI_METHOD,
    Correlation,
    Overlap,
    effect_correlation,
    paired_correlation,
    top_k,
    topk_overlap,
)
from sae_store.analyze.data import (
    Inputs,
    aligned_gender,
    choose,
    feature_matrix,
    sae_identities,
    select_samples,
)
from sae_store.analyze.matching import Matching, match_features
from sae_store.analyze.results import AnalysisRun
from sae_store.analyze.stats import cohens_d
from sae_store.errors import SaeStoreError
from sae_store.progress import progress_bar
from sae_store.store import schema as S

#: Sets whose overlap is compared: top-k by |d|, by d (male-biased) and by -d (female-biased).
DIRECTIONS = ("abs", "male", "female")


@dataclass(frozen=True)
class LayerComparison:
    """Cross-lingual results of one layer (features indexed as in the first language's SAE)."""

    d_a: np.ndarray
    d_b: np.ndarray
    """Effect sizes of language b, re-indexed to a's features (NaN where a feature has no match)."""
    paired_r: np.ndarray
    correlation: Correlation
    overlaps: dict[str, Overlap]


def compare_layer(
    x_a: np.ndarray,
    x_b: np.ndarray,
    is_male: np.ndarray,
    match: np.ndarray | None,
    config: CrossLingualConfig,
) -> LayerComparison:
    """Compare one layer's paired (samples x features) matrices of two languages.

    ``match`` (from :func:`~sae_store.analyze.matching.match_features`) re-indexes b's features onto
    a's when the languages were encoded with separate SAEs; None means one shared SAE.
    """
    is_male = np.asarray(is_male, dtype=bool)
    n_feat = x_a.shape[1]
    keep = np.arange(n_feat) if match is None else np.flatnonzero(match >= 0)
    xa = np.asarray(x_a, dtype=np.float64)[:, keep]
    xb = np.asarray(x_b, dtype=np.float64)[:, keep if match is None else match[keep]]
    d_a, d_b = cohens_d(xa[is_male], xa[~is_male]), cohens_d(xb[is_male], xb[~is_male])
    overlaps = {
        name: topk_overlap(sa, sb, config.top_k, permutations=config.permutations, seed=config.seed)
        for name, sa, sb in (("abs", np.abs(d_a), np.abs(d_b)), ("male", d_a, d_b), ("female", -d_a, -d_b))
    }
    corr = effect_correlation(xa, xb, is_male, level=config.ci_level)
    full = [np.full(n_feat, np.nan) for _ in range(3)]
    for arr, values in zip(full, (d_a, d_b, paired_correlation(xa, xb)), strict=True):
        arr[keep] = values
    return LayerComparison(full[0], full[1], full[2], corr, overlaps)


def run_crosslingual(
    inp: Inputs,
    config: CrossLingualConfig,
    *,
    layers: Sequence[int] | None = None,
    languages: Sequence[str] | None = None,
    decoders: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
    client: Client | None = None,
) -> AnalysisRun:
    """Compare the gender effects of two languages layer by layer.

    Parameters
    ----------
    languages
        The two languages (default: the first two of the features group).
    decoders
        Per layer, the decoders ``W_dec`` [d_sae, d_in] of the SAEs that encoded language a and b,
        when they were trained separately: features are matched by decoder cosine (Hungarian
        assignment) before comparing. Without it the features group must come from one shared SAE
        per layer; comparing raw indices of separately trained SAEs is refused.
    """
    store, features, labels = inp
    layers, available = choose(features, layers, None)
    pair = list(languages) if languages is not None else available[:2]
    if len(available) < 2 or len(pair) != 2 or len(set(pair)) != 2:
        raise SaeStoreError(
            f"the cross-lingual analysis needs two languages; the features group holds {available}"
            + (f" and {pair} were asked for" if languages is not None else "")
            + ": extract and encode a second language first"
        )
    choose(features, None, pair)
    matches: dict[int, Matching] = {}
    if decoders is not None:
        missing = [layer for layer in layers if layer not in decoders]
        if missing:
            raise SaeStoreError(f"no per-language decoders for layers {missing}; given: {sorted(decoders)}")
        matches = {
            layer: match_features(*decoders[layer])
            for layer in progress_bar(layers, desc="matching features", unit="layer")
        }
    else:
        for layer in layers:
            ids = sae_identities(features, layer, pair)
            if ids is not None and ids[pair[0]] != ids[pair[1]]:
                raise SaeStoreError(
                    f"layer {layer} of {pair[0]!r} and {pair[1]!r} was encoded with different SAEs "
                    f"({ids[pair[0]]} vs {ids[pair[1]]}); their feature indices are not aligned, so "
                    "comparing them index by index would be meaningless: pass the per-language SAEs "
                    "(--saes-by-language) so features are matched by decoder cosine first"
                )
    tasks, counts = [], {}
    for layer in layers:
        sels = [
            select_samples(features, labels, store, layer, lang, min_per_group=config.min_per_group)
            for lang in pair
        ]
        index = np.intersect1d(sels[0].index, sels[1].index)
        is_male = aligned_gender(features, labels)[index] == "male"
        counts[layer] = {"n_male": int(is_male.sum()), "n_female": int((~is_male).sum())}
        x = [
            feature_matrix(features, config.statistic, layer, lang).isel({S.SAMPLE: index}).data
            for lang in pair
        ]
        match = matches[layer].index if layer in matches else None
        tasks.append(delayed(compare_layer)(x[0], x[1], is_male, match, config))
    results = dict(zip(layers, compute_tasks(tasks, client, desc="cross-lingual"), strict=True))
    return AnalysisRun(
        _to_dataset(features, layers, pair, results, matches, config),
        _to_payload(layers, pair, results, matches, counts, config),
    )


def _to_dataset(
    features: xr.Dataset,
    layers: list[int],
    pair: list[str],
    results: dict[int, LayerComparison],
    matches: dict[int, Matching],
    config: CrossLingualConfig,
) -> xr.Dataset:
    a, b = pair
    per_feature = {
        f"d_{a}": np.stack([results[lay].d_a for lay in layers]),
        f"d_{b}": np.stack([results[lay].d_b for lay in layers]),
        "paired_r": np.stack([results[lay].paired_r for lay in layers]),
    }
    if matches:
        per_feature[f"matched_{b}_feature"] = np.stack([matches[lay].index for lay in layers])
        per_feature["match_cosine"] = np.stack([matches[lay].cosine for lay in layers])
    per_layer: dict[str, list[float]] = {"rho": [], "rho_low": [], "rho_high": [], "rho_n_features": []}
    for lay in layers:
        c = results[lay].correlation
        per_layer["rho"].append(c.rho)
        per_layer["rho_low"].append(c.low)
        per_layer["rho_high"].append(c.high)
        per_layer["rho_n_features"].append(c.n_features)
        for name in DIRECTIONS:
            o = results[lay].overlaps[name]
            for field in ("count", "jaccard", "expected", "p_value"):
                per_layer.setdefault(f"overlap_{name}_{field}", []).append(getattr(o, field))
    data_vars: dict[str, Any] = {k: ((S.LAYER, "feature"), v) for k, v in per_feature.items()}
    data_vars.update({k: ((S.LAYER,), np.asarray(v, dtype=np.float64)) for k, v in per_layer.items()})
    return xr.Dataset(
        data_vars,
        coords={S.LAYER: np.asarray(layers, dtype=np.int32), "feature": features["feature"].values},
        attrs={
            "config": config.to_dict(),
            "languages": pair,
            "aligned_by": "decoder matching" if matches else "shared SAE",
            "rho_ci_method": RHO_CI_METHOD,
        },
    )


def _to_payload(
    layers: list[int],
    pair: list[str],
    results: dict[int, LayerComparison],
    matches: dict[int, Matching],
    counts: dict[int, dict[str, int]],
    config: CrossLingualConfig,
) -> dict[str, Any]:
    a, b = pair
    out: dict[str, Any] = {}
    for lay in layers:
        r = results[lay]
        c = r.correlation
        top = top_k(np.abs(np.nan_to_num(r.d_a)), min(config.top_k, 20))
        entry: dict[str, Any] = {
            **counts[lay],
            "spearman_d": {
                "rho": c.rho,
                "ci_low": c.low,
                "ci_high": c.high,
                "level": config.ci_level,
                "ci_method": RHO_CI_METHOD,
                "n_features": c.n_features,
            },
            "overlap": {name: asdict(r.overlaps[name]) for name in DIRECTIONS},
            "paired_correlation": _summary(r.paired_r),
            "top_features": [
                {
                    "feature": int(f),
                    f"d_{a}": r.d_a[f],
                    f"d_{b}": r.d_b[f],
                    "paired_r": r.paired_r[f],
                    **(
                        {
                            f"matched_{b}_feature": int(matches[lay].index[f]),
                            "match_cosine": matches[lay].cosine[f],
                        }
                        if lay in matches
                        else {}
                    ),
                }
                for f in top
            ],
        }
        if lay in matches:
            entry["matching"] = matches[lay].quality()
        out[str(lay)] = entry
    return {
        "analysis": "crosslingual",
        "languages": pair,
        "config": config.to_dict(),
        "aligned_by": "decoder matching (Hungarian, cosine)" if matches else "shared SAE",
        "layers": out,
    }


def _summary(values: np.ndarray) -> dict[str, Any]:
    v = values[np.isfinite(values)]
    if not v.size:
        return {"n_features": 0}
    q25, q50, q75 = np.quantile(v, [0.25, 0.5, 0.75])
    return {
        "n_features": int(v.size),
        "mean": float(v.mean()),
        "median": float(q50),
        "q25": float(q25),
        "q75": float(q75),
    }
