"""The store's ``explanations`` group (layout in docs/store-schema.md) and delphi's file layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from sae_store.autointerp.config import ExplainConfig
from sae_store.autointerp.prompts import PROMPTS_VERSION
from sae_store.autointerp.run import Entry
from sae_store.autointerp.scoring import METHODS
from sae_store.store import ActivationStore
from sae_store.store import schema as S
from sae_store.store.results import has_group, read_group, strings, write_group

_METRICS = ("balanced_accuracy", "auc")


def _records(entries: list[Entry], languages: list[str]) -> list[dict[str, Any]]:
    out = []
    for e in entries:
        rec: dict[str, Any] = {
            "entry_layer": e.layer,
            "entry_feature": e.feature,
            "explainer": e.explainer,
            "direction": e.direction,
            "explanation": e.explanation,
            "status": e.status.partition(":")[0],
            "status_reason": e.status.partition(":")[2].strip(),
            "images_shown": e.images_shown,
            "image_feature": e.image_feature,
            "explain_language": e.explain_language,
            "explain_sample": [x.sample for x in e.shown],
            "explain_kind": [x.kind for x in e.shown],
            "score_sample": {lang: [x.sample for x in e.held.get(lang, [])] for lang in languages},
            "score_activating": {
                lang: [int(x.kind == "held") for x in e.held.get(lang, [])] for lang in languages
            },
        }
        for method in METHODS:
            for metric in _METRICS:
                rec[f"{method}_{metric}"] = {
                    lang: getattr(e.scores[(lang, method)], metric) if (lang, method) in e.scores else np.nan
                    for lang in languages
                }
        out.append(rec)
    return out


def _stored_records(ds: xr.Dataset) -> list[dict[str, Any]]:
    """The records of an existing group (padding removed), to merge a rerun into."""
    languages = [str(v) for v in ds[S.LANGUAGE].values]
    out = []
    for i in range(ds.sizes["entry"]):
        e = ds.isel(entry=i)
        pad = [str(s) for s in e["explain_sample"].values]
        keep = [j for j, s in enumerate(pad) if s]
        rec: dict[str, Any] = {
            k: e[k].item() for k in ("entry_layer", "entry_feature", "images_shown", "image_feature")
        }
        rec |= {
            k: str(e[k].values)
            for k in ("explainer", "direction", "explanation", "status", "status_reason", "explain_language")
        }
        rec["explain_sample"] = [pad[j] for j in keep]
        rec["explain_kind"] = [str(e["explain_kind"].values[j]) for j in keep]
        for k in ("score_sample", "score_activating"):
            rec[k] = {}
        for lang in languages:
            ids = [str(s) for s in e["score_sample"].sel(language=lang).values]
            act = e["score_activating"].sel(language=lang).values
            rec["score_sample"][lang] = [s for s in ids if s]
            rec["score_activating"][lang] = [int(a) for s, a in zip(ids, act, strict=True) if s]
        for method in METHODS:
            for metric in _METRICS:
                rec[f"{method}_{metric}"] = {
                    lang: float(e[f"{method}_{metric}"].sel(language=lang)) for lang in languages
                }
        out.append(rec)
    return out


def _pad(rows: list[list[Any]], fill: Any, dtype: Any) -> np.ndarray:
    out = np.full((len(rows), max((len(r) for r in rows), default=0)), fill, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


#: What each stored variable of an entry is (its ``long_name``).
DESCRIPTIONS = {
    "entry_layer": "layer of the explained feature",
    "entry_feature": "SAE latent index of the explained feature",
    "explainer": "the explainer that wrote the explanation",
    "direction": "why the feature was chosen: its bias direction, or given (named by --features L:F)",
    "explanation": "the explanation text",
    "status": "whether the explanation was scored",
    "status_reason": "why an explanation was left unscored",
    "explain_language": "language of the examples shown to the explainer",
    "images_shown": "whether the explainer was shown images",
    "image_feature": "whether most of the activation in the examples shown is on image tokens",
    "explain_sample": "samples shown to the explainer",
    "explain_kind": "how each example shown was drawn (top, quantile_i, random)",
    "score_sample": "held-out samples the explanation was scored on",
    "score_activating": "whether each held-out sample activates the feature (1), not (0), or padding (-1)",
}


def _dataset(records: list[dict[str, Any]], languages: list[str], config: ExplainConfig) -> xr.Dataset:
    held = max((len(r["score_sample"].get(lang, [])) for r in records for lang in languages), default=0)

    def per_lang(key: str, fill: Any, dtype: Any) -> np.ndarray:
        out = np.full((len(records), len(languages), held), fill, dtype=dtype)
        for i, r in enumerate(records):
            for j, lang in enumerate(languages):
                values = r[key].get(lang, [])
                out[i, j, : len(values)] = values
        return out

    data: dict[str, Any] = {
        "entry_layer": ("entry", np.array([r["entry_layer"] for r in records], dtype=np.int32)),
        "entry_feature": ("entry", np.array([r["entry_feature"] for r in records], dtype=np.int64)),
        **{
            k: ("entry", strings([r[k] for r in records]))
            for k in ("explainer", "direction", "explanation", "status", "status_reason", "explain_language")
        },
        **{k: ("entry", np.array([bool(r[k]) for r in records])) for k in ("images_shown", "image_feature")},
        "explain_sample": (("entry", "example"), _pad([r["explain_sample"] for r in records], "", object)),
        "explain_kind": (("entry", "example"), _pad([r["explain_kind"] for r in records], "", object)),
        "score_sample": (("entry", S.LANGUAGE, "held"), per_lang("score_sample", "", object)),
        "score_activating": (("entry", S.LANGUAGE, "held"), per_lang("score_activating", -1, np.int8)),
    }
    for method in METHODS:
        for metric in _METRICS:
            key = f"{method}_{metric}"
            values = [[r[key].get(lang, np.nan) for lang in languages] for r in records]
            data[key] = (
                ("entry", S.LANGUAGE),
                np.array(values, dtype=np.float32).reshape(len(records), len(languages)),
            )
    ds = xr.Dataset(data, coords={S.LANGUAGE: strings(languages)})
    for name, text in DESCRIPTIONS.items():
        ds[name].attrs["long_name"] = text
    for method in METHODS:
        for metric in _METRICS:
            ds[f"{method}_{metric}"].attrs["long_name"] = f"{metric.replace('_', ' ')} of {method} scoring"
    ds.attrs = {"config": config.to_dict(), "prompts": PROMPTS_VERSION}
    return ds


def write_entries(store: ActivationStore, entries: list[Entry], config: ExplainConfig) -> None:
    """Store ``entries`` in ``explanations``; stored entries of the same (layer, feature, explainer) are
    replaced, the others kept."""
    languages = list(store.layout.languages)
    new = _records(entries, languages)
    keys = {(r["entry_layer"], r["entry_feature"], r["explainer"]) for r in new}
    old = (
        _stored_records(read_group(store, S.EXPLANATIONS, load=True))
        if has_group(store, S.EXPLANATIONS)
        else []
    )
    kept = [r for r in old if (r["entry_layer"], r["entry_feature"], r["explainer"]) not in keys]
    write_group(store, S.EXPLANATIONS, _dataset(kept + new, languages, config))


def export_delphi(entries: list[Entry], out: Path) -> None:
    """delphi's layout: ``explanations/<module>_latent<F>.txt`` and ``scores/<scorer>/...`` (JSON)."""
    (out / "explanations").mkdir(parents=True, exist_ok=True)
    for e in entries:
        name = f"layers.{e.layer}_latent{e.feature}.txt"
        (out / "explanations" / name).write_text(json.dumps(e.explanation, ensure_ascii=False))
        for method, folder in (("detection", "detection"), ("fuzzing", "fuzz")):
            records = [r for (lang, m), s in e.scores.items() if m == method for r in s.records]
            (out / "scores" / folder).mkdir(parents=True, exist_ok=True)
            (out / "scores" / folder / name).write_text(json.dumps(records, ensure_ascii=False))
