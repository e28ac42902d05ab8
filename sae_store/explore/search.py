"""Search across layers for features by what they are: the words of their stored explanations (ranked
by detection score) and the tokens their logit lens promotes (ranked by the token's rank among the
vocabulary), with the results page linking to each feature."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import numpy as np
import panel as pn
import xarray as xr

from sae_store.explore.data import ExploreData
from sae_store.explore.layout import fmt, html_pane, link, table
from sae_store.explore.lens import token_text
from sae_store.store import schema as S

#: Features listed per kind of match.
MAX_RESULTS = 50


@dataclass(frozen=True)
class ExplanationHit:
    layer: int
    feature: int
    explanation: str
    explainer: str
    detection: float  # balanced accuracy in the page's language (NaN: unscored)


@dataclass(frozen=True)
class TokenHit:
    layer: int
    feature: int
    token: str
    rank: int  # among the vocabulary, 1 = most promoted
    logit: float


def explanation_hits(explanations: xr.Dataset | None, query: str, language: str) -> list[ExplanationHit]:
    """Entries whose explanation contains every word of ``query`` (ignoring case; every entry for a
    query without words), best detection score in ``language`` first (unscored last)."""
    words = query.casefold().split()
    if explanations is None:
        return []
    texts = [str(t) for t in explanations["explanation"].values]
    scores = np.asarray(explanations["detection_balanced_accuracy"].sel({S.LANGUAGE: language}).values)
    hits = [
        ExplanationHit(
            int(explanations["entry_layer"].values[i]),
            int(explanations["entry_feature"].values[i]),
            text,
            str(explanations["explainer"].values[i]),
            float(scores[i]),
        )
        for i, text in enumerate(texts)
        if all(w in text.casefold() for w in words)
    ]
    hits.sort(key=lambda h: (np.isnan(h.detection), -np.nan_to_num(h.detection), h.layer, h.feature))
    return hits[:MAX_RESULTS]


def token_hits(data: ExploreData, query: str) -> list[TokenHit]:
    """Features whose logit lens promotes a token equal to ``query`` (ignoring case and surrounding
    spaces): the study's gender words, ranked for every feature, and the decoded promoted tokens of each
    feature's list; the most promoted first."""
    key = query.strip().casefold()
    lens = data.analysis(S.LOGIT_LENS)
    if lens is None or not key:
        return []
    layers = np.asarray(lens[S.LAYER].values)
    features = np.asarray(lens[S.FEATURE].values)
    hits: list[TokenHit] = []
    for w, text in enumerate(lens["term_text"].values):
        if str(text).strip().casefold() != key:
            continue
        ranks = np.asarray(lens["term_rank"].isel(term=w).values)
        logits = np.asarray(lens["term_logit"].isel(term=w).values)
        best = np.argsort(ranks, axis=None, kind="stable")[:MAX_RESULTS]
        for li, fi in np.column_stack(np.unravel_index(best, ranks.shape)):
            hits.append(
                TokenHit(
                    int(layers[li]), int(features[fi]), str(text), int(ranks[li, fi]), float(logits[li, fi])
                )
            )
    if data.decode_token is not None:
        promoted = np.asarray(lens["promoted_id"].values)
        matching = [t for t in np.unique(promoted) if data.decode_token(int(t)).strip().casefold() == key]
        for li, fi, r in np.argwhere(np.isin(promoted, matching)):
            logit = float(lens["promoted_logit"].values[li, fi, r])
            token = token_text(data, int(promoted[li, fi, r]))
            hits.append(TokenHit(int(layers[li]), int(features[fi]), token, int(r) + 1, logit))
    unique = {(h.layer, h.feature, h.token): h for h in hits}
    return sorted(unique.values(), key=lambda h: (h.rank, -h.logit, h.layer, h.feature))[:MAX_RESULTS]


def _feature_link(layer: int, feature: int, language: str) -> str:
    return link(f"{layer}:{feature}", "feature", layer=layer, feature=feature, language=language)


def explanation_table(hits: list[ExplanationHit], language: str) -> pn.pane.HTML:
    """Explained features, each linking to its page, with their explanation and detection score."""
    rows = [
        [
            _feature_link(h.layer, h.feature, language),
            html.escape(h.explanation),
            html.escape(h.explainer),
            fmt(h.detection),
        ]
        for h in hits
    ]
    header = ["layer:feature", "explanation", "explainer", f"detection ({language})"]
    return html_pane(table(header, rows, raw=True))


def search_page(
    data: ExploreData, query: str, language: str, found: tuple[list[ExplanationHit], list[TokenHit]]
) -> list[Any]:
    """The results of a search (``found``: what :func:`explanation_hits` and :func:`token_hits` gave),
    each linking to its feature page."""
    explained, tokens = found
    q = html.escape(query)

    out: list[Any] = [pn.pane.Markdown(f"### Explanations containing the words of \u201c{q}\u201d")]
    if explained:
        out.append(explanation_table(explained, language))
    else:
        out.append(html_pane("No stored explanation contains them."))
    out.append(pn.pane.Markdown(f"### Features whose logit lens promotes \u201c{q}\u201d"))
    if tokens:
        rows = [
            [_feature_link(h.layer, h.feature, language), html.escape(h.token), str(h.rank), fmt(h.logit)]
            for h in tokens
        ]
        out.append(
            html_pane(table(["layer:feature", "token", "rank (1 = most promoted)", "logit"], rows, raw=True))
        )
    else:
        out.append(html_pane("No feature's logit lens promotes that token."))
    return out
