"""Which SAE set is best per layer, and by how much: the headline numbers of every set side by side.

:func:`comparison_table` reads the headline numbers of each set's stored evaluation (one row per layer
and set); :func:`best_per_layer` names the best set of each layer by one metric (``--rank-by``,
default the CE loss recovered with the SAE spliced in at image tokens), with explained variance over
image and text tokens breaking ties and standing in where that metric was not measured (the model
did not run). The CLI, the report and the explorer all show these two tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr

from sae_store.store import group_schema as G
from sae_store.store import schema as S

#: The column ranking falls back to and breaks ties with.
FALLBACK = "explained_variance"
#: Columns of :func:`comparison_table` read from the reconstruction over every language (role, metric).
_RECONSTRUCTION = {
    "explained_variance": ("all", "explained_variance"),
    "explained_variance_legacy": ("all", "explained_variance_legacy"),
    "explained_variance:image": ("image", "explained_variance"),
    "explained_variance:text": ("text", "explained_variance"),
    "cossim": ("all", "cossim"),
    "l0": ("all", "l0"),
    "dead_fraction": ("all", "dead_fraction"),
    "dense_fraction": ("all", "freq_over_10_percent"),
    "tokens": ("all", "tokens"),
}

#: Short headers of :func:`comparison_table`'s columns where people read them (the CLI, the report).
HEADERS = {
    "explained_variance": "EV",
    "explained_variance_legacy": "EV legacy",
    "explained_variance:image": "EV image",
    "explained_variance:text": "EV text",
    "cossim": "cosine",
    "l0": "L0",
    "dead_fraction": "dead",
    "dense_fraction": "dense",
    "tokens": "tokens",
    "ce_loss_score:image": "CE rec. image",
    "ce_loss_score:text": "CE rec. text",
    "ce_loss_score:all": "CE rec. all",
    "kl_div_score:image": "KL score image",
    "kl_div_score:text": "KL score text",
    "kl_div_score:all": "KL score all",
    "gender probe top-1 latent": "gender top-1",
    "gender probe raw": "gender raw",
}


def _value(da: xr.DataArray, **where: str) -> float:
    try:
        return float(da.sel(where).item())
    except KeyError:
        return math.nan


def comparison_table(evaluations: Mapping[str, xr.Dataset]) -> pd.DataFrame:
    """One row per (layer, set) evaluated: explained variance (legacy too, and image / text tokens),
    cosine, L0, dead and dense fractions, CE loss and KL scores per splice, and the gender probe's
    accuracy from the top latent and from every raw dimension (mean over languages, image tokens)."""
    rows = []
    for name, ds in evaluations.items():
        for layer in ds[S.LAYER].values.tolist():
            at = ds.sel({S.LAYER: layer})
            row: dict[str, object] = {"layer": int(layer), "set": name}
            for column, (role, metric) in _RECONSTRUCTION.items():
                row[column] = _value(at["reconstruction_total"], **{G.ROLE_SPLIT: role, G.METRIC: metric})
            for splice in at[G.SPLICE].values.tolist():
                for metric in ("ce_loss_score", "kl_div_score"):
                    row[f"{metric}:{splice}"] = _value(
                        at["behaviour_total"], **{G.SPLICE: str(splice), G.BEHAVIOUR_METRIC: metric}
                    )
            gender = [
                str(p)
                for p in at[G.PROBE].values
                if str(p).startswith("gender/") and str(p).endswith("/image")
            ]
            for label, column in (
                ("sae_top_1", "gender probe top-1 latent"),
                ("raw_all", "gender probe raw"),
            ):
                accs = [
                    _value(at["probing"], **{G.PROBE: p, G.PROBE_INPUT: label, G.PROBE_STAT: "accuracy"})
                    for p in gender
                ]
                finite = [a for a in accs if math.isfinite(a)]
                row[column] = float(np.mean(finite)) if finite else math.nan
            rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.sort_values(["layer", "set"], kind="stable").reset_index(drop=True) if rows else frame


def best_per_layer(table: pd.DataFrame, rank_by: str) -> pd.DataFrame:
    """Per layer: the best set by ``rank_by`` (or by explained variance where ``rank_by`` was not
    measured for every set), its value, the runner-up, the margin between them and whether they tie
    (equal on both metrics: the best is then the first by name)."""
    rows = []
    for layer, group in table.groupby("layer", sort=True) if len(table) else []:
        values = group[rank_by] if rank_by in group else pd.Series(np.nan, index=group.index)
        metric = rank_by if bool(np.isfinite(values.astype(float)).all()) else FALLBACK
        order = group.sort_values([metric, FALLBACK], ascending=False, kind="stable", na_position="last")
        best = order.iloc[0]
        second = order.iloc[1] if len(order) > 1 else None
        rows.append(
            {
                "layer": int(str(layer)),
                "best": best["set"],
                "by": metric,
                "value": float(best[metric]),
                "runner-up": "" if second is None else second["set"],
                "margin": math.nan if second is None else float(best[metric]) - float(second[metric]),
                "tie": second is not None
                and all(float(best[m]) == float(second[m]) for m in dict.fromkeys([metric, FALLBACK])),
                "sets": len(group),
            }
        )
    return pd.DataFrame(rows)
