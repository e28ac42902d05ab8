"""Interventions: effects of editing biased features inside the model, against random-feature controls,
and the dose-response of amplification.

Inputs are the experiment summaries ``sae-store intervene`` writes (the ``summary`` attribute of
``analysis/intervene/<key>/layer_<L>``, the same JSON as ``results/intervene/<key>_layer_<L>.json``):
the differential with its bootstrap CI, the random controls' differential and interval, the
targeted/random ratio, and per language the dose-response.
"""

from __future__ import annotations

from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

from sae_store.report.plotting import (
    COLOURS,
    FIG_SIZE,
    WIDTH,
    intervals,
    language_colour,
    layer_ticks,
    line_style,
    styled,
)
from sae_store.report.section import Figure, Frames, Section, Table, Text, format_value

#: Summaries by result key (e.g. ``male_biased_ablation``) and layer.
Summaries = dict[str, dict[int, dict[str, Any]]]


#: Table columns naming a p-value, with the test and null hypothesis behind each (shown under the table).
P_COLUMNS = {
    "differential p (Welch)": "Welch t-test of the differential; H0: the same mean effect on male- and "
    "female-labelled samples. It tests the quantity whose BCa 95% CI is `CI low`/`CI high`.",
    "p vs random": "(1 + random feature sets whose |differential| is at least the targeted set's) / (1 + "
    "random sets); H0: the targeted features move the differential no more than random features.",
    "mean effect p (t)": "one-sample t-test of the mean effect over all samples (`mean effect`, with its BCa "
    "95% CI `effect CI low`/`effect CI high`); H0: the edit does not move the male-minus-female log-odds "
    "at all. It is about the edit's overall effect, not about a difference between genders.",
}


def effects_table(summaries: Summaries) -> pd.DataFrame:
    """One row per (key, layer): the pooled differential with its CI and test, the random controls, and the
    mean effect with its CI and test (each p-value beside the quantity it tests, see :data:`P_COLUMNS`)."""
    rows = []
    for key, layers in summaries.items():
        for layer, s in sorted(layers.items()):
            ci = s.get("differential_ci") or [np.nan, np.nan]
            rand = s.get("random_differential_interval") or [np.nan, np.nan]
            effect = s.get("effect") or {}
            rows.append(
                {
                    "experiment": key,
                    "layer": layer,
                    "mode": s.get("mode"),
                    "features": s.get("n_features"),
                    "samples": s.get("n_samples"),
                    "differential": s.get("differential"),
                    "CI low": ci[0],
                    "CI high": ci[1],
                    "differential p (Welch)": s.get("differential_p", np.nan),
                    "random": s.get("random_differential", np.nan),
                    "random low": rand[0],
                    "random high": rand[1],
                    "targeted/random": s.get("targeted_random_ratio", np.nan),
                    "p vs random": (s.get("controls") or {}).get("p_random", np.nan),
                    "mean effect": effect.get("mean", np.nan),
                    "effect CI low": effect.get("ci_low", np.nan),
                    "effect CI high": effect.get("ci_high", np.nan),
                    "mean effect p (t)": effect.get("p_value", np.nan),
                }
            )
    return pd.DataFrame(rows).astype({"differential": float, "random": float})


def _points(
    x: np.ndarray, y: np.ndarray, lo: np.ndarray, hi: np.ndarray, label: str, colour: str
) -> hv.Overlay:
    """Points with their interval as error bars, per layer."""
    diff = hv.Dimension("differential", label="differential (male - female effect)")
    points = styled(hv.Scatter((x, y), "layer", diff, label=label), bokeh={"size": 8}, mpl={"s": 30})
    return line_style(points, colour) * intervals(x, lo, hi, "layer", diff, colour)


def _effects_figure(frame: pd.DataFrame) -> Figure:
    panels = []
    for key, sub in frame.groupby("experiment", sort=False):
        x = sub["layer"].to_numpy(float)
        col = {
            c: sub[c].to_numpy(float)
            for c in ("differential", "CI low", "CI high", "random", "random low", "random high")
        }
        overlay = _points(
            x, col["differential"], col["CI low"], col["CI high"], "targeted features", COLOURS["targeted"]
        )
        if np.isfinite(col["random"]).any():
            # drawn just right of the targeted point of the same layer
            overlay = overlay * _points(
                x + 0.2,
                col["random"],
                col["random low"],
                col["random high"],
                "random features",
                COLOURS["random"],
            )
        overlay = overlay * line_style(hv.HLine(0), "black", alpha=0.3)
        panels.append(
            styled(
                overlay,
                common={
                    "title": str(key),
                    "show_legend": True,
                    "xticks": layer_ticks(x, most=9),  # half-width panels
                    # a whole layer of room each side: with one layer the control point (x + 0.2)
                    # would otherwise sit at the far edge, away from its layer's tick
                    "xlim": (float(x.min()) - 1, float(x.max()) + 1),
                },
                # the legend beside the axes (page); in the PNG in a band of headroom above the data,
                # where it covers no error bar
                bokeh={"width": WIDTH // 2, "height": 300, "legend_position": "right", "padding": (0, 0.1)},
                mpl={
                    "fig_size": FIG_SIZE // 2 + 30,
                    "aspect": 1.4,
                    "legend_position": "top_right",
                    "padding": (0, (0.1, 0.7)),
                },
            )
        )
    layout = hv.Layout(panels).cols(2)
    return Figure(
        "intervention_effects",
        "Differential effect of each experiment per layer with its 95% BCa bootstrap CI (purple), beside the "
        "same edit on random feature sets of the same size (grey: mean and the interval over control draws).",
        layout,
        layout,
    )


def _dose_frame(summaries: Summaries) -> pd.DataFrame:
    rows = []
    for key, layers in summaries.items():
        for layer, s in layers.items():
            for lang, entry in (s.get("languages") or {}).items():
                for d in entry.get("dose_response") or []:
                    ci = d.get("differential_ci") or [np.nan, np.nan]
                    rows.append(
                        {
                            "experiment": key,
                            "layer": layer,
                            "language": lang,
                            "alpha": d["alpha"],
                            "differential": d["differential"],
                            "CI low": ci[0],
                            "CI high": ci[1],
                            "mean effect": d.get("mean_effect"),
                        }
                    )
    return pd.DataFrame(rows)


def _dose_overlay(sub: pd.DataFrame, title: str) -> hv.Overlay:
    alpha = hv.Dimension("alpha", label="amplification factor alpha")
    diff = hv.Dimension("differential", label="differential")
    parts = []
    for lang, g in sub.groupby("language", sort=False):
        colour = language_colour(str(lang))
        a, y = g["alpha"].to_numpy(float), g["differential"].to_numpy(float)
        curve = line_style(hv.Curve((a, y), alpha, diff, label=str(lang)), colour)
        parts.append(curve * intervals(a, g["CI low"], g["CI high"], alpha, diff, colour))
    overlay = hv.Overlay(parts) * line_style(hv.HLine(0), "black", alpha=0.3)
    alphas = sorted(set(sub["alpha"].astype(float)))
    ticks = [(a, f"{a:g}") for a in alphas]  # the measured alphas, as plain numbers
    return styled(
        overlay,
        common={
            "title": title,
            "show_legend": True,
            "legend_position": "right",
            "logx": True,
            "xticks": ticks,
            "padding": 0.08,  # keeps the intervals at the first and last alpha inside the axes
        },
        bokeh={"width": WIDTH, "height": 320},
        mpl={"fig_size": FIG_SIZE, "aspect": 2.2, "hooks": [_no_minor_labels]},
    )


def _no_minor_labels(plot: Any, element: Any) -> None:
    # matplotlib labels the minor ticks of a log axis too ("6x10^-1"), overlapping the alphas
    plot.handles["axis"].xaxis.set_minor_formatter(NullFormatter())


def _dose_figure(frame: pd.DataFrame) -> Figure:
    frames: dict[tuple[Any, ...], Any] = {}
    for key in sorted({(str(e), int(la)) for e, la in zip(frame["experiment"], frame["layer"], strict=True)}):
        sub = frame[(frame["experiment"] == key[0]) & (frame["layer"] == key[1])]
        frames[key] = _dose_overlay(sub, f"Dose-response: {key[0]}, layer {key[1]}")
    last = list(frames)[-1]
    return Figure(
        "dose_response",
        "Differential effect of amplifying the targeted features by alpha (alpha = 1: no edit), per "
        f"language, with 95% BCa bootstrap CIs. The PNG shows {last[0]} at layer {last[1]}.",
        Frames(("experiment", "layer"), frames),
        frames[last],
    )


#: Interval columns shown as one "[low, high]" column in the page's table (so that it fits its card).
_INTERVALS = {
    "differential CI": ("CI low", "CI high"),
    "random interval": ("random low", "random high"),
    "effect CI": ("effect CI low", "effect CI high"),
}


def _shown(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as the page shows it: each interval's bounds in one column, after its estimate."""
    shown = frame.copy()
    for name, (low, high) in _INTERVALS.items():
        text = [
            f"[{format_value(a)}, {format_value(b)}]" for a, b in zip(shown[low], shown[high], strict=True)
        ]
        shown.insert(list(shown.columns).index(low), name, text)
        shown = shown.drop(columns=[low, high])
    return shown


def interventions_section(summaries: Summaries) -> Section:
    """Intervention effects with CIs against random controls, and the dose-response curves."""
    frame = effects_table(summaries)
    any_summary = next(iter(next(iter(summaries.values())).values()))
    items: list[Any] = [Text(f"**Definition.** {any_summary.get('definition', '')}"), _effects_figure(frame)]
    dose = _dose_frame(summaries)
    if not dose.empty:
        items.append(_dose_figure(dose))
    items.append(Table(_shown(frame), "Per experiment and layer", max_rows=80))
    items.append(Text("**p-values in the table.** " + " ".join(f"`{k}`: {v}" for k, v in P_COLUMNS.items())))
    summary = {
        "per_experiment": frame.to_dict(orient="records"),
        "dose_response": dose.to_dict(orient="records"),
    }
    return Section("interventions", "Interventions", items, summary)


def splice_quality(summaries: Summaries) -> dict[tuple[int, str], dict[str, Any]]:
    """Per (layer, language), the SAE splice quality recorded by an intervention experiment there."""
    out: dict[tuple[int, str], dict[str, Any]] = {}
    for layers in summaries.values():
        for layer, s in layers.items():
            for lang, entry in (s.get("languages") or {}).items():
                if "splice_quality" in entry:
                    out.setdefault((layer, lang), entry["splice_quality"])
    return out
