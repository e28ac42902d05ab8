"""The feature page: one (layer, feature) in both languages, from statistics to where it fires."""

from __future__ import annotations

from typing import Any

import numpy as np
import panel as pn

from sae_store.analyze import firing_tokens, grid_side
from sae_store.explore import plots
from sae_store.explore.context import examples_html
from sae_store.explore.data import ExploreData, SampleTokens
from sae_store.explore.layout import html_pane, link, missing, table
from sae_store.explore.lens import explanations_panel, lens_panel
from sae_store.explore.overview import features_missing
from sae_store.explore.tryout import LiveModel, tryout_panel
from sae_store.store import schema as S
from sae_store.store.schema import FEATURE_MAX, FEATURE_MEAN

#: Samples whose every token is checked for a feature that never fires on the encoded tokens.
SCAN_SAMPLES = 8
_STATS = ("d", "q", "ci_low", "ci_high", "male_mean", "female_mean", "male_freq", "female_freq")


def feature_page(data: ExploreData, layer: int, feature: int, language: str, live: LiveModel) -> list[Any]:
    """The feature page's sections: statistics and histograms of every language, top samples and
    tokens of ``language`` (the page's language switch), interventions, neighbours and the test box
    (which runs ``live``)."""
    data.check_feature(layer, feature)
    if data.features is None:
        return [features_missing(data)]
    return [
        *_statistics(data, layer, feature),
        *_histograms(data, layer, feature),
        *_density(data, layer, feature, language),
        *explanations_panel(data, layer, feature),
        *_top_samples(data, layer, feature, language),
        *lens_panel(data, layer, feature),
        *_interventions(data, layer, feature),
        *_neighbours(data, layer, feature, language),
        *tryout_panel(data, live, layer, feature, language),
    ]


def _correlation(r: float) -> str:
    """The paired correlation across samples, or why there is none."""
    if np.isfinite(r):
        return f"paired correlation across samples r = {r:.3f}"
    return "no paired correlation across samples: the feature takes one value in a language"


def _statistics(data: ExploreData, layer: int, feature: int) -> list[Any]:
    bias = data.analysis("bias")
    out: list[Any] = [pn.pane.Markdown("### Statistics")]
    if bias is None or layer not in bias[S.LAYER].values:
        out.append(missing("No bias results for this layer", f"sae-store analyze bias {data.store.path}"))
    else:
        b = bias.sel({S.LAYER: layer}).isel({S.FEATURE: feature})
        rows = [[lang, *(float(b[v].sel({S.LANGUAGE: lang})) for v in _STATS)] for lang in data.languages]
        out.append(html_pane(table(["language", *_STATS], rows)))
    cl = data.analysis("crosslingual")
    if cl is not None and layer in cl[S.LAYER].values:
        c = cl.sel({S.LAYER: layer}).isel({S.FEATURE: feature})
        b_lang = data.languages[1]
        matched = f"matched_{b_lang}_feature"
        if matched in c:
            other = int(c[matched])
            out.append(
                html_pane(
                    f"Matched feature in the {b_lang} SAE: "
                    + link(f"{other}", "feature", layer=layer, feature=other, language=b_lang)
                    + f" (decoder cosine {float(c['match_cosine']):.3f}); "
                    + _correlation(float(c["paired_r"]))
                )
            )
        else:
            out.append(
                html_pane(
                    f"One SAE encodes both languages: feature {feature} is the same direction in each "
                    f"({_correlation(float(c['paired_r']))})."
                )
            )
    return out


def _histograms(data: ExploreData, layer: int, feature: int) -> list[Any]:
    genders = data.labels.gender[: data.n_samples]
    figs = []
    for lang in data.languages:
        col = data.feature_column(FEATURE_MEAN, layer, lang, feature)
        values = {g: col[genders == g] for g in ("male", "female")}
        figs.append(
            pn.pane.HoloViews(
                plots.histograms(
                    values, title=f"{lang}: mean activation per sample", xlabel="mean activation"
                )
            )
        )
    return [pn.pane.Markdown("### Activation by gender and language"), pn.Row(*figs)]


def _roles(data: ExploreData) -> str:
    """The token roles ``encode`` summarised, in words (``image and text``)."""
    assert data.features is not None
    return " and ".join(map(str, data.features.attrs.get("roles") or [])) or "encoded"


def _density(data: ExploreData, layer: int, feature: int, language: str) -> list[Any]:
    """Histograms of log10 firing frequency of every feature of the layer in ``language``, one per token
    role ``encode`` kept (pooled, with a note, for a features group encoded before the split), this
    feature marked on each."""
    heading = pn.pane.Markdown(f"### Activation density: every feature of layer {layer} ({language})")
    by_role = data.role_frequency(layer, language)
    note: list[Any] = []
    if by_role is None:
        by_role = {_roles(data): data.firing_frequency(layer, language)}
        note = [
            missing(
                f"These features were encoded before per-role statistics were stored: the density pools "
                f"the {_roles(data)} tokens. A density per role needs the features encoded again",
                f"sae-store encode {data.store.path} --saes SAE_DIR --overwrite",
            )
        ]
    if not any(np.isfinite(freq).any() for freq in by_role.values()):
        return [heading, html_pane(f"No sample of layer {layer} is encoded in {language} yet.")]
    rows = [_density_row(freq, feature, role, language) for role, freq in by_role.items()]
    return [heading, *note, *rows]


def _density_row(freq: np.ndarray, feature: int, role: str, language: str) -> pn.Row:
    """The histogram of one role's log10 firing frequencies with ``feature`` marked, and a sentence."""
    f = float(freq[feature])
    if not np.isfinite(f):
        return pn.Row(html_pane(f"No {role} token is encoded in {language}."))
    with np.errstate(divide="ignore"):
        log_freq = np.log10(freq)
    silent = int(np.sum(freq == 0))
    if f > 0:
        rank = int(np.sum(freq > f)) + 1
        said = (
            f"Feature {feature} is active on {f:.3%} of the {role} tokens (log10 {np.log10(f):.2f}), "
            f"rank {rank} of {freq.size} features by frequency"
        )
    else:
        said = f"Feature {feature} is never active on the {role} tokens of {language}"
    note = f"{said}; {silent} features never fire there (not drawn)."
    title = f"{language}, {role} tokens: log10 firing frequency"
    fig = plots.density(log_freq, float(np.log10(f)) if f > 0 else None, title=title)
    return pn.Row(pn.pane.HoloViews(fig), html_pane(note, width=360))


def _top_samples(data: ExploreData, layer: int, feature: int, language: str) -> list[Any]:
    col = data.feature_column(FEATURE_MAX, layer, language, feature)
    heading = pn.pane.Markdown(
        f"### Activations in context ({language}): top, activation quantiles and random firing samples"
    )
    if not np.isfinite(col).any():
        encode = f"sae-store encode {data.store.path} --saes SAE_DIR"
        return [heading, missing(f"No {language} sample is encoded at layer {layer}", encode)]
    if np.nanmax(col) <= 0:
        return [heading, *_inactive(data, layer, feature, language, col)]
    if not data.saes.has(layer):
        return [heading, no_sae(data, layer)]
    return [heading, html_pane(examples_html(data, layer, feature, language, col))]


def _inactive(data: ExploreData, layer: int, feature: int, language: str, col: np.ndarray) -> list[Any]:
    """What the page says of a feature that never fires on the token roles ``encode`` summarised:
    where it fires instead, on every token of the first :data:`SCAN_SAMPLES` samples."""
    roles = _roles(data)
    encoded = np.flatnonzero(np.isfinite(col))
    out: list[Any] = [
        html_pane(
            f"Feature {feature} does not fire on the {roles} tokens of any of the {encoded.size} encoded "
            f"samples in {language} (the tokens <code>encode</code> summarised): it has no top samples there."
        )
    ]
    if not data.saes.has(layer):
        return [*out, no_sae(data, layer)]
    scanned = encoded[:SCAN_SAMPLES]
    rows = [
        row
        for i in scanned
        for row in _firing_rows(
            data,
            language,
            str(data.labels.sample[i]),
            data.tokens(language, int(i), layer=layer, feature=feature),
        )
    ]
    if not rows:
        return [*out, html_pane(f"It fires on no token of the first {scanned.size} samples either.")]
    return [
        *out,
        pn.pane.Markdown(f"### Where it fires instead: every token of the first {scanned.size} samples"),
        _firing_table(rows),
    ]


def _firing_rows(data: ExploreData, language: str, sid: str, t: SampleTokens) -> list[list[Any]]:
    if t.acts is None:
        return []
    side = grid_side(data.image_tokens) if data.image_tokens else 1
    return [
        [language, sid, tok["role"], tok["token"], f"{tok['activation']:.3f}"]
        for tok in firing_tokens(t.acts, t.roles, t.ids, side, data.decode_token)
    ]


def _firing_table(rows: list[list[Any]]) -> pn.pane.HTML:
    return html_pane(table(["language", "sample", "role", "token", "activation"], rows))


def no_sae(data: ExploreData, layer: int) -> pn.pane.HTML:
    """A box saying that layer ``layer`` has no SAE, and how to train one."""
    return missing(
        f"No SAE for layer {layer}: token activations cannot be computed",
        f"sae-store train {data.store.path} --layer {layer} --out SAE_DIR",
    )


def _interventions(data: ExploreData, layer: int, feature: int) -> list[Any]:
    rows = []
    for key, by_layer in data.interventions.items():
        summary = by_layer.get(layer)
        if summary is None or feature not in summary.get("features", []):
            continue
        for lang, entry in summary.get("languages", {}).items():
            ci = entry.get("differential_ci") or [None, None]
            rows.append(
                [
                    key,
                    summary.get("mode"),
                    len(summary["features"]),
                    lang,
                    entry.get("differential"),
                    ci[0],
                    ci[1],
                ]
            )
    if not rows:
        return [
            pn.pane.Markdown("### Interventions"),
            html_pane(f"No intervention on layer {layer} includes feature {feature}."),
        ]
    header = ["experiment", "mode", "features edited", "language", "differential effect", "CI low", "CI high"]
    return [pn.pane.Markdown("### Interventions involving this feature"), html_pane(table(header, rows))]


def _neighbours(data: ExploreData, layer: int, feature: int, language: str) -> list[Any]:
    if not data.saes.has(layer):
        return []
    nb = data.saes.neighbours(layer, feature)
    rows = [
        [link(str(int(f)), "feature", layer=layer, feature=int(f), language=language), f"{c:.3f}"]
        for f, c in zip(nb.features, nb.cosine, strict=True)
    ]
    return [
        pn.pane.Markdown("### Neighbouring features (decoder cosine)"),
        html_pane(table(["feature", "cosine"], rows, raw=True)),
    ]
