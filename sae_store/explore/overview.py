"""The overview page: bias results per layer and language, cross-lingual agreement, SAE quality and
completeness, with links into feature pages."""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd
import panel as pn

from sae_store.evaluate import best_per_layer, comparison_table, read_evaluations
from sae_store.explore import plots
from sae_store.explore.data import ExploreData
from sae_store.explore.layout import html_pane, link, missing, table
from sae_store.explore.search import explanation_hits, explanation_table
from sae_store.store import completion
from sae_store.store import schema as S
from sae_store.train import DEAD_METRICS


def default_layer(data: ExploreData) -> int:
    """The deepest layer with bias results (or the deepest layer)."""
    bias = data.analysis("bias")
    return int(bias[S.LAYER].values[-1]) if bias is not None else data.layers[-1]


def overview_page(data: ExploreData, layer: int, language: str) -> list[Any]:
    """The overview's sections for one (layer, language) chosen in the URL."""
    layer_links = " ".join(
        f"<b>{la}</b>" if la == layer else link(str(la), "overview", layer=la, language=language)
        for la in data.layers
    )
    sources = " &middot; ".join(
        f"{name}: <code>{html.escape(str(path))}</code>"
        for name, path in (("store", data.store.path), ("SAEs", data.saes_dir), ("results", data.results_dir))
        if path is not None
    )
    return [
        html_pane(f"{sources}<br>layer: {layer_links}"),
        *_bias(data, layer, language),
        *_crosslingual(data, layer),
        *_explanations(data, language),
        *_quality(data),
        *_evaluation(data),
        *_completeness(data),
    ]


def features_missing(data: ExploreData) -> pn.pane.HTML:
    """What to run when the store has no features yet: ``extract`` while activations are missing,
    else ``encode``."""
    store = data.store.path
    acts = completion(data.store)
    if not acts.is_complete:
        what = (
            f"Only {acts.fraction:.0%} of the activations are extracted"
            if acts.done.any()
            else "No activations are extracted yet"
        )
        return missing(what, f"sae-store extract {store} --model MODEL_DIR")
    return missing("No SAE features are encoded yet", f"sae-store encode {store} --saes SAE_DIR")


def _bias(data: ExploreData, layer: int, language: str) -> list[Any]:
    store = data.store.path
    if data.features is None:
        return [features_missing(data)]
    bias = data.analysis("bias")
    if bias is None:
        return [missing("No bias results yet", f"sae-store analyze bias {store}")]
    if layer not in bias[S.LAYER].values:
        return [
            missing(f"Layer {layer} has no bias results", f"sae-store analyze bias {store} --layers {layer}")
        ]
    b = bias.sel({S.LAYER: layer, S.LANGUAGE: language})
    frame = pd.DataFrame({"feature": b[S.FEATURE].values, "d": b["d"].values, "q": b["q"].values})
    alpha = float(bias.attrs.get("config", {}).get("alpha", 0.05))
    counts = bias["n_significant"].load()
    rows = [
        [la, *(int(counts.sel({S.LAYER: la, S.LANGUAGE: lg}).item()) for lg in bias[S.LANGUAGE].values)]
        for la in bias[S.LAYER].values
    ]
    header = ["layer", *(f"significant ({lg})" for lg in bias[S.LANGUAGE].values)]
    return [
        pn.pane.Markdown(f"### Gender bias (q <= {alpha})"),
        pn.Row(
            pn.pane.HoloViews(plots.volcano(frame, layer=layer, language=language, alpha=alpha)),
            html_pane(table(header, rows)),
        ),
    ]


def _crosslingual(data: ExploreData, layer: int) -> list[Any]:
    if data.features is None or data.analysis("bias") is None:
        return []
    cl = data.analysis("crosslingual")
    if cl is None:
        return [
            missing("No cross-lingual agreement yet", f"sae-store analyze crosslingual {data.store.path}")
        ]
    a, b = data.languages[:2]
    rows = [
        [
            int(la),
            float(cl["rho"].sel({S.LAYER: la})),
            float(cl["rho_low"].sel({S.LAYER: la})),
            float(cl["rho_high"].sel({S.LAYER: la})),
        ]
        for la in cl[S.LAYER].values
    ]
    config = cl.attrs.get("config")
    level = f"{100 * float(config.get('ci_level', 0.95)):g}%" if isinstance(config, dict) else "95%"
    method = cl.attrs.get("rho_ci_method", "bootstrap")
    header = ["layer", "Spearman rho of d", f"{level} CI low", f"{level} CI high"]
    note = pn.pane.Markdown(
        f"Spearman correlation over features of Cohen's d in {a} and {b}; CI: {method}, over the features "
        "(images taken as given)."
    )
    out: list[Any] = [pn.pane.Markdown(f"### Cross-lingual agreement ({a} vs {b})")]
    if layer in cl[S.LAYER].values and f"d_{a}" in cl and f"d_{b}" in cl:
        c = cl.sel({S.LAYER: layer})
        frame = pd.DataFrame(
            {"feature": c[S.FEATURE].values, f"d_{a}": c[f"d_{a}"].values, f"d_{b}": c[f"d_{b}"].values}
        )
        out.append(
            pn.Row(
                pn.pane.HoloViews(plots.agreement(frame, a, b, layer=layer)),
                html_pane(table(header, rows)),
            )
        )
    else:
        out.append(html_pane(table(header, rows)))
    out.append(note)
    return out


#: Explained features the overview lists (the search box finds the others).
OVERVIEW_EXPLAINED = 10


def _explanations(data: ExploreData, language: str) -> list[Any]:
    if data.features is None or data.analysis("bias") is None:
        return []
    hits = explanation_hits(data.explanations, "", language)[:OVERVIEW_EXPLAINED]
    if data.explanations is None or not hits:
        return [missing("No feature is explained yet", f"sae-store explain {data.store.path} --saes SAE_DIR")]
    n = data.explanations.sizes["entry"]
    return [
        pn.pane.Markdown(
            f"### Explained features: the best {len(hits)} of {n} by detection score in {language} "
            "(0.5 = chance; the search box finds the others by their words)"
        ),
        explanation_table(hits, language),
    ]


def _quality(data: ExploreData) -> list[Any]:
    if not data.sae_records:
        if not completion(data.store).done.any():
            return []  # nothing to train on yet: the box above says to extract
        return [missing("No trained SAEs found", f"sae-store train {data.store.path} --out SAE_DIR")]
    held_out_dead, held_out_tokens = DEAD_METRICS["dead_fraction"]
    rows = []
    for layer, rec in sorted(data.sae_records.items()):
        val = rec.cfg.get("sae_store", {}).get("metrics", {}).get("val", {})
        rows.append(
            [
                layer,
                rec.cfg.get("architecture", "?"),
                rec.cfg.get("d_sae"),
                val.get("explained_variance"),
                val.get("l0"),
                val.get("dead_fraction"),
                val.get(held_out_tokens, val.get("tokens")),
            ]
        )
    header = ["layer", "architecture", "d_sae", "explained variance", "L0", held_out_dead, "held-out tokens"]
    return [pn.pane.Markdown("### SAE quality (held-out)"), html_pane(table(header, rows))]


def _evaluation(data: ExploreData) -> list[Any]:
    from sae_store.report import evaluation_figure

    evaluations = read_evaluations(data.store)
    if not evaluations:
        return [missing("No SAE sets evaluated yet", f"sae-store evaluate {data.store.path} --saes SAE_DIR")]
    frame = comparison_table(evaluations)
    config = next(iter(evaluations.values())).attrs.get("config") or {}
    best = best_per_layer(frame, str(config.get("rank_by", "ce_loss_score:image")))
    rows = [
        [r["layer"], r["best"], r["by"], r["value"], r["runner-up"], r["margin"]]
        for r in best.to_dict("records")
    ]
    header = ["layer", "best SAE set", "by", "value", "runner-up", "margin"]
    return [
        pn.pane.Markdown("### Which SAE to trust (`sae-store evaluate`)"),
        html_pane(table(header, rows)),
        pn.pane.HoloViews(evaluation_figure(frame)),
    ]


def _completeness(data: ExploreData) -> list[Any]:
    acts = completion(data.store)
    feats = completion(data.store, group="features") if data.features is not None else None
    rows = []
    for i, layer in enumerate(acts.layers):
        row: list[Any] = [layer]
        for j, _ in enumerate(acts.languages):
            row.append(f"{100 * float(np.mean(acts.done[i, j])):.0f}%")
            row.append(f"{100 * float(np.mean(feats.done[i, j])):.0f}%" if feats is not None else "-")
        rows.append(row)
    header = ["layer", *(f"{kind} ({lg})" for lg in acts.languages for kind in ("activations", "features"))]
    return [
        pn.pane.Markdown(f"### Completeness ({data.n_samples} samples)"),
        html_pane(table(header, rows, raw=True)),
    ]
