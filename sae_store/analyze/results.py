"""Where results go: one sub-group of the store's ``analysis`` group per analysis, and JSON files.

Each run of an analysis replaces its sub-group and JSON file. Layout (``attrs["config"]`` holds the
configuration that produced each one):

- ``analysis/bias`` (``comprehensive_analysis_results.json``): per (layer, language, feature)
  ``male_mean``, ``female_mean``, ``male_freq``, ``female_freq``, ``d`` (male minus female), ``t``,
  ``df``, ``p_welch``, ``u``, ``p_mwu``, ``q``, ``ci_low``/``ci_high`` (BCa bootstrap interval of
  ``d``, ``attrs["ci_method"]``) and ``ci_excluded`` (resamples that interval left out because a
  group's values were all equal in them) for the reported features only (NaN elsewhere); per (layer,
  language) ``n_male``, ``n_female``, ``n_unknown``, ``n_ambiguous``, ``n_not_encoded``,
  ``n_significant``; ``null_discoveries`` (layer, language, permutation).
- ``analysis/crosslingual`` (``crosslingual.json``): per (layer, feature) ``d_<a>``, ``d_<b>``,
  ``paired_r`` (and ``matched_<b>_feature``, ``match_cosine`` for separate SAEs); per layer ``rho``
  (Spearman over features of ``d_<a>`` and ``d_<b>``), ``rho_low``, ``rho_high`` (its interval,
  ``attrs["rho_ci_method"]``: Fisher z with the Bonett-Wright variance), ``rho_n_features`` (features
  used), ``overlap_{abs,male,female}_{count,jaccard,expected,p_value}``.
- ``analysis/crosslayer`` (``crosslayer.json``, which also holds the lineage): per (layer, language)
  ``n_significant``, ``max_abs_d``, ``probe_{sae,raw}_{accuracy,ci_low,ci_high}``,
  ``probe_sae_balanced_accuracy``, ``probe_chance_accuracy`` (the larger gender's share of the probed
  samples).
- ``analysis/interpret`` (``interpret.json``): per inspected ``entry`` (``entry_layer``,
  ``entry_language``, ``entry_feature``, ``direction``) a ``description``, ``top_sample`` and
  ``top_value`` (entry, rank), ``histogram`` (entry, hist_language, gender, bin) and its edges.
- ``analysis/visual`` (``visual.json``, PNGs in ``visual/``): ``map`` (entry, rank, gy, gx) of each
  top sample's image-token activations, ``mean_map`` (entry, gy, gx), ``sample`` (entry, rank).
- ``analysis/qualitative`` (``qualitative.json``, ``.csv``, ``.md``): one ``row`` per (sample,
  layer, language, feature) with the columns of :data:`~sae_store.analyze.qualitative.COLUMNS`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from sae_store.analyze.registry import produced_by
from sae_store.errors import IncompleteError, StaleResultError
from sae_store.store import ActivationStore
from sae_store.store import schema as S
from sae_store.store.results import has_group, read_group, stale_reason, write_group


@dataclass(frozen=True)
class AnalysisRun:
    """One analysis's result: the Dataset for ``analysis/<name>``, its JSON payload and files beside it."""

    dataset: xr.Dataset
    payload: dict[str, Any]
    files: list[Path] = field(default_factory=list)


#: ``long_name`` of the variables of the analysis groups (exact names, then name prefixes).
DESCRIPTIONS = {
    "layer": "decoder layer index",
    "language": "prompt language key",
    "sample": "sample id",
    "feature": "SAE latent index",
    "male_mean": "mean feature statistic over male samples",
    "female_mean": "mean feature statistic over female samples",
    "male_freq": "fraction of male samples where the feature is active",
    "female_freq": "fraction of female samples where the feature is active",
    "d": "effect size, Cohen's d (male minus female)",
    "t": "Welch t statistic",
    "df": "Welch degrees of freedom",
    "p_welch": "Welch t-test p-value",
    "u": "Mann-Whitney U statistic",
    "p_mwu": "Mann-Whitney U p-value",
    "q": "Benjamini-Hochberg adjusted p-value",
    "ci_low": "lower bound of the BCa bootstrap confidence interval of d",
    "ci_high": "upper bound of the BCa bootstrap confidence interval of d",
    "ci_excluded": "bootstrap resamples left out of the interval of d (a group without spread)",
    "n_significant": "number of significant features",
    "null_discoveries": "significant features under label permutations",
    "paired_r": "correlation of the feature's d between the languages",
    "rho": "Spearman correlation over features of d between the languages",
    "rho_low": "lower bound of the confidence interval of rho (Fisher z, Bonett-Wright variance)",
    "rho_high": "upper bound of the confidence interval of rho (Fisher z, Bonett-Wright variance)",
    "rho_n_features": "features the Spearman correlation is computed over",
    "max_abs_d": "largest |d| over the features",
    "probe_chance_accuracy": "share of the larger gender: accuracy of always predicting it",
    "description": "automatic description of the feature",
    "direction": "bias direction of the feature (male or female)",
    "top_sample": "samples where the feature is strongest",
    "top_value": "feature value of the top samples",
    "histogram": "histogram of the feature's values",
    "histogram_edges": "bin edges of the histogram",
    "map": "feature activation over the image-token grid",
    "mean_map": "mean feature activation over the image-token grid",
    "activation": "feature value of the sample",
    "interpretation": "automatic description of the feature",
    "baseline_score": "gender score of the unedited caption",
    "effect": "change of the gender score when the features are edited",
    "control_effect": "change of the gender score when random control features are edited",
    "dose_effect": "change of the gender score per amplification factor",
    "features": "edited features",
    "control_features": "features of each random control set",
    "edited_caption": "caption generated with the features edited",
    "edited_male_terms": "male terms in the edited caption",
    "edited_female_terms": "female terms in the edited caption",
    "evaluated": "the sample was part of the experiment",
    "alpha": "amplification factor",
    "gender": "gender label of the sample",
    "image": "image path relative to the images folder",
    "caption": "reference caption",
}
_PREFIXES = {
    "n_": "number of samples: ",
    "d_": "effect size d in language ",
    "overlap_": "overlap of the significant features between the languages: ",
    "probe_": "gender probe: ",
    "entry_": "inspected entry: ",
    "matched_": "best-matching feature in the other language's SAE: ",
    "match_": "cosine similarity of the matched features: ",
}


def describe(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with a ``long_name`` on every variable and coordinate that has none."""
    for name, var in ds.variables.items():
        if "long_name" in var.attrs or "description" in var.attrs:
            continue
        key = str(name)
        text = DESCRIPTIONS.get(key)
        if text is None:
            prefix = next((p for p in _PREFIXES if key.startswith(p)), None)
            words = key.removeprefix(prefix or "").replace("_", " ")
            text = _PREFIXES[prefix] + words if prefix else words
        var.attrs["long_name"] = text
    return ds


def write_analysis(store: ActivationStore, name: str, ds: xr.Dataset) -> str:
    """Write ``ds`` as ``analysis/<name>`` of the store, replacing an earlier result; returns the group path.

    Every variable gets a ``long_name``; attributes are made JSON-safe (NaN as null); the store's
    results writer puts it on the store's axes (:func:`sae_store.store.results.write_group`).
    """
    ds = describe(ds.copy())
    ds.attrs = {k: to_jsonable(v) for k, v in ds.attrs.items()}
    return write_group(store, f"{S.ANALYSIS}/{name}", ds)


def has_analysis(store: ActivationStore, name: str) -> bool:
    """Whether the store holds the result ``analysis/<name>``."""
    return has_group(store, f"{S.ANALYSIS}/{name}")


def read_analysis(store: ActivationStore, name: str) -> xr.Dataset:
    """The stored result ``analysis/<name>``, loaded; refused with the command to run if it is missing
    or stale (computed from features encoded with other SAEs since)."""
    if not has_analysis(store, name):
        raise IncompleteError(
            f"the store {str(store.path)!r} has no {name} results yet; run "
            f"`{produced_by(name)} {store.path}` first"
        )
    reason = stale_reason(store, f"{S.ANALYSIS}/{name}")
    if reason is not None:
        raise StaleResultError(f"{reason}; run `{produced_by(name)} {store.path}` again")
    return read_group(store, f"{S.ANALYSIS}/{name}", load=True)


def to_jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays turned into Python types and NaN/inf into None (JSON null)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(out_dir: str | Path, filename: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON (strict: no NaN) to ``out_dir/filename``; returns the path."""
    path = Path(out_dir) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(payload), indent=2, allow_nan=False, ensure_ascii=False))
    tmp.replace(path)
    return path
