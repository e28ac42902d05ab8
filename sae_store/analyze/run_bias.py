"""``analyze bias`` on a store: one dask task per (layer, language), corrections, lists and outputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from dask import delayed
from distributed import Client

from sae_store.analyze.bias import (
    TEST_FIELDS,
    FamilyBias,
    biased_features,
    family_bias,
    feature_records,
    reported_cis,
)
from sae_store.analyze.cluster import compute_tasks
from sae_store.analyze.config import BiasConfig
from sae_store.analyze.data import Inputs, Selection, choose, feature_matrix, select_samples
from sae_store.analyze.resample import CI_METHOD, BootstrapCI
from sae_store.analyze.results import AnalysisRun
from sae_store.analyze.stats import bh_count, bh_qvalues
from sae_store.store import schema as S
from sae_store.store.results import strings


def run_bias(
    inp: Inputs,
    config: BiasConfig,
    *,
    layers: Sequence[int] | None = None,
    languages: Sequence[str] | None = None,
    client: Client | None = None,
) -> AnalysisRun:
    """Test every feature of every (layer, language) for a gender difference.

    Parameters
    ----------
    inp
        The store, its features group (lazy) and its labels (:func:`~sae_store.analyze.data.open_inputs`).
    config
        Test, correction, reporting and resampling settings.
    layers, languages
        Subsets to analyse (default: all in the features group).
    client
        A dask client (:func:`~sae_store.analyze.cluster.open_cluster`); None runs here.
    """
    store, features, labels = inp
    layers, languages = choose(features, layers, languages)
    keys = [(layer, lang) for layer in layers for lang in languages]
    selections = {
        key: select_samples(
            features,
            labels,
            store,
            *key,
            min_per_group=config.min_per_group,
            allow_incomplete=config.allow_incomplete,
        )
        for key in keys
    }
    matrices = {key: feature_matrix(features, config.statistic, *key) for key in keys}
    tasks = [
        delayed(family_bias)(
            matrices[k].isel({S.SAMPLE: selections[k].index}).data, selections[k].is_male, config
        )
        for k in keys
    ]
    families: dict[tuple[int, str], FamilyBias] = dict(
        zip(keys, compute_tasks(tasks, client, desc="bias tests"), strict=True)
    )
    q = _qvalues(families, config)
    nulls = _null_counts(families, config)
    reported = {
        k: biased_features(families[k].tests.d, q[k], alpha=config.alpha, top_n=config.top_n) for k in keys
    }
    columns = {k: np.concatenate([reported[k].male, reported[k].female]) for k in keys}
    ci_tasks = [
        delayed(reported_cis)(
            matrices[k].isel({S.SAMPLE: selections[k].index, "feature": columns[k]}).data,
            selections[k].is_male,
            config,
        )
        for k in keys
    ]
    cis: dict[tuple[int, str], BootstrapCI] = dict(
        zip(keys, compute_tasks(ci_tasks, client, desc="bootstrap CIs"), strict=True)
    )
    dataset = _to_dataset(features, layers, languages, families, q, cis, columns, selections, nulls, config)
    payload = _to_payload(layers, languages, families, q, cis, reported, selections, nulls, config)
    return AnalysisRun(dataset, payload)


def _qvalues(
    families: dict[tuple[int, str], FamilyBias], config: BiasConfig
) -> dict[tuple[int, str], np.ndarray]:
    if config.correction == "layer_language":
        return {k: f.q for k, f in families.items()}
    keys = list(families)
    p = np.concatenate([families[k].tests.p(config.test) for k in keys])
    q = bh_qvalues(p)
    bounds = np.cumsum([0] + [families[k].q.size for k in keys])
    return {k: q[bounds[i] : bounds[i + 1]] for i, k in enumerate(keys)}


def _null_counts(
    families: dict[tuple[int, str], FamilyBias], config: BiasConfig
) -> dict[tuple[int, str], np.ndarray] | None:
    """Discoveries per permutation and family, under the same correction as the real data."""
    if not config.permutations:
        return None
    if config.correction == "layer_language":
        return {k: f.null.counts for k, f in families.items() if f.null is not None}
    n_total = sum(f.q.size for f in families.values())
    out: dict[tuple[int, str], np.ndarray] = {
        k: np.zeros(config.permutations, dtype=np.int64) for k in families
    }
    for i in range(config.permutations):
        small = {k: f.null.small_p[i] for k, f in families.items() if f.null is not None and f.null.small_p}
        k_i = bh_count(np.concatenate(list(small.values())), n_total, config.alpha)
        threshold = config.alpha * k_i / n_total
        for k, p in small.items():
            out[k][i] = int((p <= threshold).sum()) if k_i else 0
    return out


def _null_summary(counts: np.ndarray, observed: int) -> dict[str, Any]:
    return {
        "permutations": int(counts.size),
        "observed": observed,
        "null_mean": float(counts.mean()),
        "null_q95": float(np.quantile(counts, 0.95)),
        "null_max": int(counts.max()),
        # the fraction of shuffles with at least as many discoveries (with the +1 of an exact test)
        "p_value": float((1 + (counts >= observed).sum()) / (1 + counts.size)),
    }


def _to_dataset(
    features: xr.Dataset,
    layers: list[int],
    languages: list[str],
    families: dict[tuple[int, str], FamilyBias],
    q: dict[tuple[int, str], np.ndarray],
    cis: dict[tuple[int, str], BootstrapCI],
    columns: dict[tuple[int, str], np.ndarray],
    selections: dict[tuple[int, str], Selection],
    nulls: dict[tuple[int, str], np.ndarray] | None,
    config: BiasConfig,
) -> xr.Dataset:
    n_feat = features.sizes["feature"]
    shape = (len(layers), len(languages), n_feat)
    per_feature = {
        name: np.full(shape, np.nan) for name in (*TEST_FIELDS, "q", "ci_low", "ci_high", "ci_excluded")
    }
    per_family = {
        name: np.zeros(shape[:2], dtype=np.int64)
        for name in ("n_male", "n_female", "n_unknown", "n_ambiguous", "n_not_encoded", "n_significant")
    }
    null = np.full((*shape[:2], config.permutations), -1, dtype=np.int64)
    for i, layer in enumerate(layers):
        for j, lang in enumerate(languages):
            k = (layer, lang)
            for name in TEST_FIELDS:
                per_feature[name][i, j] = getattr(families[k].tests, name)
            per_feature["q"][i, j] = q[k]
            per_feature["ci_low"][i, j, columns[k]] = cis[k].low
            per_feature["ci_high"][i, j, columns[k]] = cis[k].high
            per_feature["ci_excluded"][i, j, columns[k]] = np.where(
                np.isnan(cis[k].low), np.nan, cis[k].excluded
            )
            sel = selections[k]
            per_family["n_male"][i, j], per_family["n_female"][i, j] = sel.n_male, sel.n_female
            per_family["n_unknown"][i, j] = sel.excluded["unknown"]
            per_family["n_ambiguous"][i, j] = sel.excluded["ambiguous"]
            per_family["n_not_encoded"][i, j] = sel.excluded["not_encoded"]
            per_family["n_significant"][i, j] = int((q[k] < config.alpha).sum())
            if nulls is not None:
                null[i, j] = nulls[k]
    dims3 = (S.LAYER, S.LANGUAGE, "feature")
    data_vars: dict[str, Any] = {name: (dims3, v) for name, v in per_feature.items()}
    data_vars.update({name: ((S.LAYER, S.LANGUAGE), v) for name, v in per_family.items()})
    if config.permutations:
        data_vars["null_discoveries"] = ((S.LAYER, S.LANGUAGE, "permutation"), null)
    return xr.Dataset(
        data_vars,
        coords={
            S.LAYER: np.asarray(layers, dtype=np.int32),
            S.LANGUAGE: strings(languages),
            "feature": features["feature"].values,
        },
        attrs={
            "config": config.to_dict(),
            "sign": "male minus female",
            "ci_method": CI_METHOD,
            "features_attrs": dict(features.attrs),
        },
    )


def _to_payload(
    layers: list[int],
    languages: list[str],
    families: dict[tuple[int, str], FamilyBias],
    q: dict[tuple[int, str], np.ndarray],
    cis: dict[tuple[int, str], BootstrapCI],
    reported: dict[tuple[int, str], Any],
    selections: dict[tuple[int, str], Selection],
    nulls: dict[tuple[int, str], np.ndarray] | None,
    config: BiasConfig,
) -> dict[str, Any]:
    by_language: dict[str, dict[str, Any]] = {lang: {"layers": {}} for lang in languages}
    for (layer, lang), fam in families.items():
        k = (layer, lang)
        n_male = len(reported[k].male)
        ci_male, ci_female = (
            BootstrapCI(*(bound[span] for bound in cis[k])) for span in (slice(n_male), slice(n_male, None))
        )
        sig = q[k] < config.alpha
        entry: dict[str, Any] = {
            "language": lang,
            **selections[k].counts(),
            "n_features": int(q[k].size),
            "n_significant": int(sig.sum()),
            "n_male_biased_significant": int((sig & (fam.tests.d > 0)).sum()),
            "n_female_biased_significant": int((sig & (fam.tests.d < 0)).sum()),
            "max_abs_d": float(np.nanmax(np.abs(fam.tests.d[np.isfinite(fam.tests.d)]), initial=0.0)),
            "male_biased_features": feature_records(reported[k].male, fam.tests, q[k], ci_male, config.test),
            "female_biased_features": feature_records(
                reported[k].female, fam.tests, q[k], ci_female, config.test
            ),
        }
        if nulls is not None:
            entry["permutation_null"] = _null_summary(nulls[k], int(sig.sum()))
        by_language[lang]["layers"][str(layer)] = entry
    primary = languages[0]
    return {
        "analysis": "bias",
        "config": config.to_dict(),
        "sign": "male minus female (d > 0: more active for images captioned as men)",
        "ci": {
            "method": CI_METHOD,
            "level": config.ci_level,
            "resamples": config.bootstrap,
            "resampled": "images, within each gender",
            "excluded": "resamples in which a group whose values vary in the data drew only one value "
            "(its variance vanished); left out of that feature's interval, counted in ci_excluded",
        },
        "primary_language": primary,
        "languages": languages,
        "layers": by_language[primary]["layers"],
        "by_language": by_language,
    }
