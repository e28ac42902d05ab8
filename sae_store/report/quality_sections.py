"""SAE quality per layer: held-out FVU, L0 and dead latents (from training, or measured by ``encode`` for
pretrained SAEs with the same formulas), CE loss recovered when the SAE's reconstruction replaces the
layer output (from the intervention experiments), training curves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd

from sae_store.report.plotting import COLOURS, language_colour, layer_ticks, line_style, styled
from sae_store.report.section import Figure, Frames, Section, Table, Text
from sae_store.train.discovery import DEAD_METRICS, SaeRecord

HELD_OUT_DEAD, HELD_OUT_TOKENS = DEAD_METRICS["dead_fraction"]
WINDOW_DEAD, WINDOW_TOKENS = DEAD_METRICS["dead_fraction_train_window"]

#: Held-out metrics drawn per layer: (column of :func:`quality_table`, key in :attr:`SaeRecord.quality`,
#: label).
METRICS = (
    ("fvu", "fvu", "FVU (fraction of variance unexplained)"),
    ("l0", "l0", "L0 (active features per token)"),
    (HELD_OUT_DEAD, "dead_fraction", f"{HELD_OUT_DEAD} (fraction of latents)"),
)


def quality_table(saes: Mapping[int, SaeRecord]) -> pd.DataFrame:
    """One row per layer: architecture, sizes and the held-out metrics as ``train`` or ``encode``
    saved them."""
    rows = []
    for layer, rec in sorted(saes.items()):
        ours = rec.cfg.get("sae_store", {})
        val = rec.quality
        rows.append(
            {
                "layer": layer,
                "architecture": ours.get("architecture", rec.cfg.get("architecture")),
                "format": rec.format,
                "measured by": rec.measured_by if val else None,
                "d_in": rec.cfg.get("d_in"),
                "d_sae": rec.cfg.get("d_sae"),
                "k": rec.cfg.get("k"),
                **{column: val.get(key, np.nan) for column, key, _ in METRICS},
                "held-out tokens": val.get(HELD_OUT_TOKENS, val.get("tokens")),
                "explained variance": val.get("explained_variance", np.nan),
                WINDOW_DEAD: val.get("dead_fraction_train_window", np.nan),
                "training window (tokens)": val.get(WINDOW_TOKENS),
            }
        )
    return pd.DataFrame(rows)


def _panel(points: Any, title: str, layers: list[int], **opts: Any) -> Any:
    # the y axis starts at 0: these are fractions and counts, and a truncated axis would make
    # differences of a few percent look large
    return styled(
        points,
        common={"title": title, "xticks": layer_ticks(layers, most=9), "ylim": (0, None), **opts},
        bokeh={"width": 420, "height": 240},
        mpl={"fig_size": 80, "aspect": 1.6},
    )


def _metric_panels(frame: pd.DataFrame, splice: Mapping[tuple[int, str], dict[str, Any]]) -> hv.Layout:
    layers = frame["layer"].tolist()
    panels = []
    for name, _, label in METRICS:
        # the panel's title says what the metric is; its y label stays short enough for the panel
        dim = hv.Dimension(name, label=label.split(" (")[0])
        colour = COLOURS["targeted"]
        curve = line_style(hv.Curve(frame, "layer", dim), colour) * line_style(
            hv.Scatter(frame, "layer", dim), colour
        )
        panels.append(_panel(curve, label, layers))
    if len({layer for layer, _ in splice}) > 1:  # one layer is a point per language: the table says it
        ce = hv.Dimension("ce_recovered", label="CE loss recovered")
        parts = []
        for lang in sorted({lang for _, lang in splice}):
            pts = sorted((layer, s["ce_recovered"]) for (layer, lg), s in splice.items() if lg == lang)
            parts.append(
                line_style(hv.Curve(pts, "layer", ce, label=lang), language_colour(lang))
                * line_style(hv.Scatter(pts, "layer", ce, label=lang), language_colour(lang))
            )
        # a worse splice than zero-ablation is negative: the axis starts at 0 or below
        low = min(0.0, min(s["ce_recovered"] for s in splice.values()))
        panels.append(
            _panel(
                hv.Overlay(parts),
                "CE loss recovered (spliced SAE)",
                layers,
                show_legend=True,
                ylim=(low, None),
            )
        )
    return hv.Layout(panels).cols(2)


def _curves(saes: Mapping[int, SaeRecord]) -> Frames | None:
    frames = {}
    for layer, rec in sorted(saes.items()):
        rows = [r for r in rec.metrics if r.get("split") != "val" and "step" in r]
        if not rows:
            continue
        steps = [r["step"] for r in rows]
        fvu = line_style(
            hv.Curve((steps, [r.get("fvu", np.nan) for r in rows]), "step", "fvu", label="FVU"),
            COLOURS["targeted"],
        )
        l0 = line_style(
            hv.Curve((steps, [r.get("l0", np.nan) for r in rows]), "step", "l0", label="L0"), COLOURS["en"]
        )
        frames[(layer,)] = hv.Layout(
            [
                styled(
                    curve,
                    common={"title": f"layer {layer}: {name} during training", "ylim": (0, None)},
                    bokeh={"width": 420, "height": 240},
                )
                for name, curve in (("FVU", fvu), ("L0", l0))
            ]
        )
    if not frames:
        return None
    return Frames(("layer",), frames)


def quality_section(
    saes: Mapping[int, SaeRecord], splice: Mapping[tuple[int, str], dict[str, Any]] | None = None
) -> Section:
    """SAE quality per layer, from the SAE folders (and the splice quality of interventions, if any)."""
    splice = splice or {}
    frame = quality_table(saes)
    items: list[Any] = [
        Text(
            "Held-out metrics on the `held-out tokens` vectors of the layer (all of them, at most 100,000; "
            "the samples `sae-store train` holds out): saved by `sae-store train` (`cfg.json`), or, for a "
            "pretrained SAE (`measured by` encode), measured by `sae-store encode` with the same formulas. "
            "FVU = sum of squared errors / sum of squared "
            "deviations from the held-out mean (1 - explained variance, as SAELens and SAEBench), L0 = mean "
            f"active latents per token, `{HELD_OUT_DEAD}` = fraction of latents that never fire on those "
            f"tokens. `{WINDOW_DEAD}` = fraction of latents that did not fire during the last `training "
            "window (tokens)` tokens of training (what AuxK revives): a different number, measured on other "
            "and usually more tokens, so a latent silent on the held-out tokens may still fire in training. "
            "CE loss recovered = (CE zero-ablated - CE with the SAE spliced "
            "in) / (CE zero-ablated - CE clean) and KL recovered = 1 - KL(clean || spliced) / KL(clean || "
            "zero-ablated), measured on caption tokens by `sae-store intervene`"
            + ("" if splice else " (not run yet)")
            + "."
        )
    ]
    panels = _metric_panels(frame, splice)
    items.append(Figure("sae_quality", "SAE quality per layer.", panels, panels))
    spliced = sorted({layer for layer, _ in splice})
    if len(spliced) == 1:
        values = ", ".join(f"{lang} {s['ce_recovered']:.3g}" for (_, lang), s in sorted(splice.items()))
        items.append(
            Text(
                f"CE loss recovered is measured at layer {spliced[0]} only (where the interventions ran): "
                f"{values}; the table below has it with the KL recovered."
            )
        )
    curves = _curves(saes)
    if curves is not None:
        items.append(
            Figure(
                "sae_training_curves",
                "Training metrics logged every N steps (metrics.jsonl), per layer.",
                curves,
            )
        )
    table = frame.copy()
    for lang in sorted({lang for _, lang in splice}):
        table[f"CE recovered {lang}"] = [
            splice.get((layer, lang), {}).get("ce_recovered", np.nan) for layer in table["layer"]
        ]
        table[f"KL recovered {lang}"] = [
            splice.get((layer, lang), {}).get("kl_recovered", np.nan) for layer in table["layer"]
        ]
    items.append(Table(table.dropna(axis=1, how="all"), "Per layer", max_rows=64))
    summary = {"per_layer": table.to_dict(orient="records")}
    return Section("sae_quality", "SAE quality per layer", items, summary)
