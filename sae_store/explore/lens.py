"""The feature page's panels of what a feature is: its explanations with their scores (``sae-store
explain``) and its logit lens (``analyze logit_lens``): the output tokens its decoder direction promotes
and suppresses, and where the study's gender words rank."""

from __future__ import annotations

from typing import Any

import numpy as np
import panel as pn
import xarray as xr

from sae_store.explore.data import ExploreData
from sae_store.explore.layout import html_pane, missing, table
from sae_store.store import schema as S

#: Tokens listed per direction.
LENS_ROWS = 10
_METHODS = ("detection", "fuzzing")


def token_text(data: ExploreData, token_id: int) -> str:
    """A token as the tokenizer writes it (``<id N>`` without the model folder), whitespace quoted."""
    text = data.decode_token(token_id) if data.decode_token else f"<id {token_id}>"
    return repr(text) if not text.strip() or text != text.strip() else text


def feature_entries(explanations: xr.Dataset, layer: int, feature: int) -> list[int]:
    """Entries of the explanations group for (``layer``, ``feature``)."""
    layers = np.asarray(explanations["entry_layer"].values)
    features = np.asarray(explanations["entry_feature"].values)
    return [int(i) for i in np.flatnonzero((layers == layer) & (features == feature))]


def explanation_row(explanations: xr.Dataset, i: int, languages: tuple[str, ...]) -> list[Any]:
    """explainer, explanation, status, then detection and fuzzing balanced accuracy per language."""
    e = explanations.isel(entry=i)
    status = ": ".join(filter(None, (str(e["status"].values), str(e["status_reason"].values))))
    scores = [
        float(e[f"{m}_balanced_accuracy"].sel({S.LANGUAGE: lang})) for m in _METHODS for lang in languages
    ]
    return [str(e["explainer"].values), str(e["explanation"].values) or "-", status, *scores]


def explanation_header(languages: tuple[str, ...]) -> list[str]:
    return ["explainer", "explanation", "status", *(f"{m} {lang}" for m in _METHODS for lang in languages)]


def explanations_panel(data: ExploreData, layer: int, feature: int) -> list[Any]:
    heading = pn.pane.Markdown("### Explanations (scored on held-out examples; 0.5 = chance)")
    ex = data.explanations
    entries = [] if ex is None else feature_entries(ex, layer, feature)
    if ex is None or not entries:
        return [
            heading,
            missing(
                f"Feature {feature} of layer {layer} has no explanation yet",
                f"sae-store explain {data.store.path} --saes SAE_DIR --features {layer}:{feature}",
            ),
        ]
    rows = [explanation_row(ex, i, data.languages) for i in entries]
    return [heading, html_pane(table(explanation_header(data.languages), rows))]


def lens_panel(data: ExploreData, layer: int, feature: int) -> list[Any]:
    heading = pn.pane.Markdown(
        "### Logit lens: output tokens this feature's direction promotes and suppresses"
    )
    lens = data.analysis(S.LOGIT_LENS)
    if lens is None or layer not in lens[S.LAYER].values:
        return [
            heading,
            missing(f"No logit lens for layer {layer}", f"sae-store analyze logit_lens {data.store.path}"),
        ]
    f = lens.sel({S.LAYER: layer}).isel({S.FEATURE: feature}).load()
    promoted, suppressed = f["promoted_id"].values, f["suppressed_id"].values
    rows = [
        [token_text(data, int(promoted[r])), float(f["promoted_logit"].values[r]),
         token_text(data, int(suppressed[r])), float(f["suppressed_logit"].values[r])]
        for r in range(min(LENS_ROWS, promoted.size))
    ]  # fmt: skip
    vocab = int(lens.attrs.get("vocab_size", 0))
    ranks = np.asarray(f["term_rank"].values)
    order = np.argsort(ranks, kind="stable")
    terms = [
        [str(f["term_text"].values[w]), str(f["term_language"].values[w]), str(f["term_gender"].values[w]),
         int(ranks[w]), float(f["term_logit"].values[w])]
        for w in order
    ]  # fmt: skip
    return [
        heading,
        pn.Row(
            html_pane(table(["promoted", "logit", "suppressed", "logit"], rows)),
            html_pane(
                f"<p>Gender words of the study, by rank among the {vocab:,} tokens (1 = most promoted)</p>"
                + table(["word", "language", "gender", "rank", "logit"], terms),
                styles={"max-height": "360px", "overflow-y": "auto"},
            ),
        ),
    ]
