"""Summaries of an intervention experiment, written to the store's ``analysis`` group and to JSON.

One experiment (a feature set, a mode, one layer) is a result *key* such as ``male_biased_ablation``
and a layer. Its per-sample values go to ``analysis/intervene/<key>/layer_<L>``; its summary to
``<out>/intervene/<key>_layer_<L>.json``. Array tasks over layers each write their own group and
file; :func:`write_cross_layer` then gathers every layer into ``<out>/cross_layer_results.json``,
keeping the shape users' scripts read: ``["male_biased_ablation"]["10"]["differential"]``.

The **differential** is the mean effect on male-labelled samples minus the mean effect on
female-labelled samples, where a sample's effect is metric (a) (male-minus-female term log-probability
at the first content positions of its baseline caption) with the edit minus without, averaged over
languages. Positive: the edit moves male-labelled samples more towards male terms than female ones.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from sae_store.analyze.results import describe, to_jsonable, write_json
from sae_store.errors import SaeStoreError
from sae_store.intervene.experiment import LanguageEffects, LayerResult
from sae_store.intervene.stats import compare_controls, differential, paired_stats
from sae_store.store import ActivationStore
from sae_store.store import schema as S
from sae_store.store.results import write_group

__all__ = [
    "CROSS_LAYER_JSON",
    "DEFINITION",
    "TESTS",
    "result_key",
    "summarise",
    "to_dataset",
    "write_cross_layer",
    "write_result",
]

log = logging.getLogger(__name__)

CROSS_LAYER_JSON = "cross_layer_results.json"
_NOUNS = {"ablate": "ablation", "amplify": "amplification", "neutralise": "neutralisation"}
DEFINITION = (
    "differential = mean effect on male-labelled samples - mean effect on female-labelled samples; effect = "
    "[log P(male terms) - log P(female terms)] at the first content positions of the model's own baseline "
    "caption (teacher-forced), with the edit minus without, averaged over languages"
)
#: What each interval and p-value of a summary is, by its key (written into every summary).
TESTS = {
    "differential_ci": "BCa bootstrap interval of the differential (each gender resampled on its own)",
    "differential_p": "Welch t-test of the differential; H0: equal mean effect on male- and female-labelled "
    "samples",
    "effect": "mean effect over all samples, its BCa bootstrap interval (ci_low, ci_high) and a one-sample "
    "t-test (p_value; H0: mean effect 0): whether the edit moves the term log-odds at all, not whether it "
    "moves them differently by gender",
    "random_differential_interval": "central interval of the differentials of the random feature sets (their "
    "spread, not a CI)",
    "p_random": "(1 + random sets with |differential| >= the targeted set's) / (1 + random sets); H0: the "
    "targeted features move the differential no more than random features",
}


def result_key(label: str, mode: str) -> str:
    """``"male_biased"`` + ``"ablate"`` -> ``"male_biased_ablation"``."""
    return f"{label}_{_NOUNS[mode]}"


def _block(
    effects: np.ndarray, controls: np.ndarray, genders: np.ndarray, *, n_boot: int, seed: int
) -> dict[str, Any]:
    diff = differential(effects, genders, n_boot=n_boot, seed=seed)
    out: dict[str, Any] = {
        "differential": diff.value,
        "differential_ci": [diff.ci_low, diff.ci_high],
        "differential_p": diff.p_value,
        "differential_detail": asdict(diff),
        "effect": asdict(paired_stats(effects, n_boot=n_boot, seed=seed)),
        "effect_male": asdict(paired_stats(effects[genders == "male"], n_boot=n_boot, seed=seed)),
        "effect_female": asdict(paired_stats(effects[genders == "female"], n_boot=n_boot, seed=seed)),
    }
    if controls.shape[0]:
        cmp = compare_controls(effects, controls, genders)
        out.update(
            random_differential=cmp.random_differential,
            random_differential_interval=[cmp.random_differential_low, cmp.random_differential_high],
            targeted_random_ratio=cmp.differential_ratio,
            controls=asdict(cmp),
        )
    return out


def _term_counts(
    effects: LanguageEffects, base_male: np.ndarray, base_female: np.ndarray, n_boot: int, seed: int
) -> dict[str, Any]:
    assert effects.edited_captions is not None
    male = np.array([c.male for c in effects.edited_captions], dtype=float)
    female = np.array([c.female for c in effects.edited_captions], dtype=float)
    base_total, total = float(base_male.sum() + base_female.sum()), float(male.sum() + female.sum())
    return {
        "baseline_male": int(base_male.sum()),
        "baseline_female": int(base_female.sum()),
        "edited_male": int(male.sum()),
        "edited_female": int(female.sum()),
        "relative_change_total": (total - base_total) / base_total if base_total else None,
        "delta_male": asdict(paired_stats(male - base_male, n_boot=n_boot, seed=seed)),
        "delta_female": asdict(paired_stats(female - base_female, n_boot=n_boot, seed=seed)),
        "delta_total": asdict(
            paired_stats(male + female - base_male - base_female, n_boot=n_boot, seed=seed)
        ),
    }


def summarise(
    result: LayerResult,
    genders: np.ndarray,
    baseline_terms: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    n_boot: int = 2000,
) -> dict[str, Any]:
    """The JSON summary of one experiment (pooled over languages and per language).

    Parameters
    ----------
    result : LayerResult
        From :func:`~sae_store.intervene.experiment.run_intervention`.
    genders : numpy.ndarray
        Label per sample (the same samples in every language).
    baseline_terms : dict
        Per language, (male, female) term counts of the baseline captions per sample.
    """
    seed, langs = result.config.seed, list(result.languages)
    per_lang: dict[str, Any] = {}
    for lang, e in result.languages.items():
        entry = _block(e.effect, e.control_effects, genders, n_boot=n_boot, seed=seed)
        entry["baseline_score"] = float(np.nanmean(e.baseline_score))
        entry["splice_quality"] = asdict(e.splice)
        if e.edited_captions is not None:
            entry["term_counts"] = _term_counts(e, *baseline_terms[lang], n_boot, seed)
        if e.dose_effects.shape[0]:
            entry["dose_response"] = [
                {"alpha": a, "mean_effect": float(np.nanmean(d)), **_dose(d, genders, n_boot, seed)}
                for a, d in zip(result.config.dose_alphas, e.dose_effects, strict=True)
            ]
        per_lang[lang] = entry
    pooled = _block(
        np.mean([result.languages[lang].effect for lang in langs], axis=0),
        np.mean([result.languages[lang].control_effects for lang in langs], axis=0),
        genders,
        n_boot=n_boot,
        seed=seed,
    )
    return {
        "analysis": "intervene",
        "layer": result.layer,
        "mode": result.config.mode,
        "alpha": result.config.alpha if result.config.mode == "amplify" else None,
        "positions": result.config.positions,
        "n_features": len(result.features),
        "features": list(result.features),
        "control_sets": [list(c) for c in result.control_sets],
        "n_samples": int(genders.size),
        "definition": DEFINITION,
        "tests": TESTS,
        "config": result.config.to_dict(),
        **pooled,
        "languages": per_lang,
    }


def _dose(d: np.ndarray, genders: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    diff = differential(d, genders, n_boot=n_boot, seed=seed)
    return {
        "differential": diff.value,
        "differential_ci": [diff.ci_low, diff.ci_high],
        "differential_p": diff.p_value,
    }


def to_dataset(
    result: LayerResult, sample_ids: np.ndarray, genders: np.ndarray, summary: dict[str, Any]
) -> xr.Dataset:
    """Per-sample values of one experiment as a Dataset (``summary`` in its attributes, as JSON)."""
    langs = list(result.languages)

    def stack(name: str) -> np.ndarray:
        return np.stack([getattr(result.languages[lang], name) for lang in langs])

    data: dict[str, Any] = {
        "baseline_score": ((S.LANGUAGE, S.SAMPLE), stack("baseline_score")),
        "effect": ((S.LANGUAGE, S.SAMPLE), stack("effect")),
        "control_effect": (("control", S.LANGUAGE, S.SAMPLE), stack("control_effects").transpose(1, 0, 2)),
        "control_features": (
            ("control", "rank"),
            np.array(result.control_sets, dtype=np.int32).reshape(
                len(result.control_sets), len(result.features)
            ),
        ),
        "features": (("rank",), np.array(result.features, dtype=np.int32)),
    }
    coords: dict[str, Any] = {
        S.LANGUAGE: np.array(langs, dtype=object),
        S.SAMPLE: np.asarray(sample_ids, dtype=object),
        S.GENDER: (S.SAMPLE, np.asarray(genders, dtype=object)),
    }
    if result.config.mode == "amplify":
        data["dose_effect"] = (("alpha", S.LANGUAGE, S.SAMPLE), stack("dose_effects").transpose(1, 0, 2))
        coords["alpha"] = np.array(result.config.dose_alphas, dtype=np.float64)
    if all(e.edited_captions is not None for e in result.languages.values()):
        caps = [result.languages[lang].edited_captions or [] for lang in langs]
        data["edited_caption"] = (
            (S.LANGUAGE, S.SAMPLE),
            np.array([[c.text for c in cs] for cs in caps], dtype=object),
        )
        data["edited_male_terms"] = (
            (S.LANGUAGE, S.SAMPLE),
            np.array([[c.male for c in cs] for cs in caps], dtype=np.int32),
        )
        data["edited_female_terms"] = (
            (S.LANGUAGE, S.SAMPLE),
            np.array([[c.female for c in cs] for cs in caps], dtype=np.int32),
        )
    return xr.Dataset(
        data, coords=coords, attrs={"summary": json.dumps(to_jsonable(summary), allow_nan=False)}
    )


def write_result(
    store: ActivationStore, out_dir: str | Path, key: str, ds: xr.Dataset, summary: dict[str, Any]
) -> tuple[str, Path]:
    """Write one layer's experiment to ``analysis/intervene/<key>/layer_<L>`` and its JSON summary.

    The per-sample values are stored on the store's whole ``language`` and ``sample`` axes (NaN,
    -1 or ``""`` where a sample was not part of the experiment; ``evaluated`` marks those that
    were), so the store opens as one aligned ``xr.DataTree``.

    Returns
    -------
    (group, path)
        The store group written and the JSON file.
    """
    group = f"{S.INTERVENE}/{key}/{S.INTERVENE_LAYER_PREFIX}{summary['layer']}"
    ds = ds.assign(evaluated=xr.ones_like(ds["effect"], dtype=bool))
    write_group(store, group, describe(ds))
    path = write_json(
        Path(out_dir) / "intervene", f"{key}_layer_{summary['layer']}.json", {"key": key, **summary}
    )
    return group, path


_CROSS_FIELDS = (
    "differential",
    "differential_ci",
    "differential_p",
    "random_differential",
    "random_differential_interval",
    "targeted_random_ratio",
    "mode",
    "alpha",
    "positions",
    "n_features",
    "features",
    "n_samples",
)


def write_cross_layer(out_dir: str | Path) -> Path:
    """Gather every ``<out>/intervene/*.json`` into ``<out>/cross_layer_results.json``.

    Shape: ``{key: {layer (str): {"differential": ..., "differential_ci": [lo, hi], "differential_p": ...,
    "random_differential": ..., "effect_mean": ..., "effect_p_value": ..., "definition": ..., "tests": {...},
    "languages": {lang: {"differential": ..., ...}}}}}``; ``tests`` says what each interval and p-value is.
    """
    per_layer = Path(out_dir) / "intervene"
    if not per_layer.is_dir():
        raise SaeStoreError(
            f"{str(out_dir)!r} holds no intervene/ folder of per-layer results; give the folder that "
            "`sae-store intervene --results` wrote to (default: results/ beside the store)"
        )
    out: dict[str, Any] = {}
    for path in sorted(per_layer.glob("*_layer_*.json")):
        payload = json.loads(path.read_text(encoding="utf-8"))
        entry = {k: payload.get(k) for k in _CROSS_FIELDS}
        entry["definition"] = DEFINITION
        entry["tests"] = TESTS
        entry["p_random"] = payload.get("controls", {}).get("p_random")
        entry["effect_mean"] = payload["effect"]["mean"]
        entry["effect_p_value"] = payload["effect"]["p_value"]
        entry["languages"] = {
            lang: {
                k: v.get(k)
                for k in ("differential", "differential_ci", "differential_p", "random_differential")
            }
            for lang, v in payload["languages"].items()
        }
        out.setdefault(payload["key"], {})[str(payload["layer"])] = entry
    for key, layers in out.items():
        out[key] = dict(sorted(layers.items(), key=lambda kv: int(kv[0])))
    return write_json(out_dir, CROSS_LAYER_JSON, out)
