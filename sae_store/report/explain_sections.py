"""What the top biased features are: their explanations, scores and logit-lens tokens, in one table."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sae_store.models.tokens import TokenDecoder
from sae_store.report.section import Notice, Section, Table, Text
from sae_store.store.results import strings

#: Features listed (the most biased first).
MAX_ROWS = 20
#: Promoted tokens shown per feature.
TOKENS = 5


def order_by_effect(entries: xr.Dataset, bias: xr.Dataset | None, language: str) -> np.ndarray:
    """Indices of ``entries`` by the |d| of their (``entry_layer``, ``language``, ``entry_feature``),
    largest first (stored order without bias results)."""
    if bias is None:
        return np.arange(entries.sizes["entry"])
    d = [
        abs(float(bias["d"].sel(layer=int(la), language=str(lg), feature=int(f))))
        for la, lg, f in zip(
            entries["entry_layer"].values,
            strings(entries[language].values),
            entries["entry_feature"].values,
            strict=True,
        )
    ]
    return np.argsort(-np.nan_to_num(np.asarray(d), nan=-1.0), kind="stable")


def _score(ds: xr.Dataset, i: int, name: str, language: str) -> float:
    if language not in set(strings(ds["language"].values)):
        return math.nan
    return float(ds[name].isel(entry=i).sel(language=language))


def _lens(lens: xr.Dataset | None, layer: int, feature: int, decode: TokenDecoder | None) -> dict[str, Any]:
    """Promoted tokens and the best-ranked gender word of each gender at one feature."""
    if lens is None or layer not in set(int(v) for v in lens["layer"].values):
        return {}
    f = lens.sel(layer=layer, feature=feature)
    ids = [int(t) for t in f["promoted_id"].values[:TOKENS]]
    words = decode if decode is not None else (lambda t: f"<id {t}>")
    out: dict[str, Any] = {"promotes": " ".join(repr(words(t)) for t in ids)}
    ranks = np.asarray(f["term_rank"].values)
    for gender in ("male", "female"):
        pick = np.flatnonzero(strings(lens["term_gender"].values) == gender)
        if pick.size:
            best = pick[np.argmin(ranks[pick])]
            out[f"best {gender} word (rank)"] = f"{lens['term_text'].values[best]} ({int(ranks[best])})"
    return out


def explanations_section(
    explanations: xr.Dataset | None,
    lens: xr.Dataset | None,
    bias: xr.Dataset | None,
    decode: TokenDecoder | None,
    languages: list[str],
) -> Section:
    """One row per explained feature (or, without explanations, per top biased feature)."""
    rows: list[dict[str, Any]] = []
    if explanations is not None:
        for i in order_by_effect(explanations, bias, "explain_language")[:MAX_ROWS]:
            e = explanations.isel(entry=int(i))
            layer, feature = int(e["entry_layer"]), int(e["entry_feature"])
            row: dict[str, Any] = {
                "layer": layer, "feature": feature, "direction": str(e["direction"].values),
                "explainer": str(e["explainer"].values), "explanation": str(e["explanation"].values) or "-",
                "status": ": ".join(filter(None, (str(e["status"].values), str(e["status_reason"].values)))),
            }  # fmt: skip
            for lang in languages:
                row[f"detection {lang}"] = _score(explanations, int(i), "detection_balanced_accuracy", lang)
                row[f"fuzzing {lang}"] = _score(explanations, int(i), "fuzzing_balanced_accuracy", lang)
            rows.append(row | _lens(lens, layer, feature, decode))
    elif lens is not None and bias is not None:
        for layer in [int(v) for v in lens["layer"].values]:
            b = bias.sel(layer=layer, language=languages[0])
            alpha = float(bias.attrs["config"]["alpha"])
            sig = np.flatnonzero(np.asarray(b["q"].values) < alpha)
            for f in sig[np.argsort(-np.abs(np.asarray(b["d"].values)[sig]))][:3]:
                rows.append(
                    {"layer": layer, "feature": int(f), "d": float(b["d"].values[f])}
                    | _lens(lens, layer, int(f), decode)
                )
    items: list[Any] = [
        Text(
            "Explanations are written from English examples and scored on held-out examples of every "
            "language: **detection** (does the scorer tell firing from non-firing examples from the "
            "explanation?) and **fuzzing** (does it tell the truly active tokens from others?), as "
            "balanced accuracy (0.5 = chance). The logit lens lists the tokens each feature's decoder "
            "direction promotes through the final norm and unembedding, and where the study's gender "
            "words rank among all tokens (1 = promoted most)."
        )
    ]
    text_only = (
        sorted(
            set(
                strings(explanations["explainer"].values)[
                    np.asarray(explanations["image_feature"].values)
                    & ~np.asarray(explanations["images_shown"].values)
                ]
            )
        )
        if explanations is not None
        else []
    )
    if text_only:
        names = ", ".join(f"`{n}`" for n in text_only)
        items.append(
            Notice(f"Image-token features were explained from text contexts by {names} (no images).", "info")
        )
    if rows:
        items.append(
            Table(pd.DataFrame(rows), caption="The most biased explained features", max_rows=MAX_ROWS)
        )
    return Section(
        "explanations",
        "What the top biased features are",
        items,
        summary={
            "features": len(rows),
            "scored": int(sum(str(r.get("status")) == "scored" for r in rows)),
        },
    )
