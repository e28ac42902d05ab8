"""The report's section for an analysis without a dedicated one: what it stored, and its settings.

Any analysis registered in :mod:`sae_store.analyze.registry` appears in the report: the built-in ones
through their own sections (:data:`~sae_store.report.assemble.DEDICATED`), every other one through
this section, which lists the variables of its ``analysis/<name>`` group and the settings it ran with.
"""

from __future__ import annotations

import pandas as pd
import xarray as xr

from sae_store.analyze.registry import Analysis
from sae_store.report.section import Section, Table, Text


def analysis_section(analysis: Analysis, ds: xr.Dataset) -> Section:
    """What ``analysis`` stored: one row per variable (dimensions, sizes, description)."""
    rows = [
        {
            "variable": str(name),
            "dimensions": ", ".join(map(str, var.dims)),
            "shape": " x ".join(str(n) for n in var.shape),
            "description": str(var.attrs.get("long_name", "")),
        }
        for name, var in ds.data_vars.items()
    ]
    config = ds.attrs.get("config")
    what = analysis.help[:1].upper() + analysis.help[1:]
    items: list[Text | Table] = [
        Text(f"{what}. Stored in the store's `analysis/{analysis.name}`."),
        Table(pd.DataFrame(rows), caption=f"Variables of `analysis/{analysis.name}`"),
    ]
    if isinstance(config, dict):
        items.append(Text("Settings: " + ", ".join(f"`{k}` = {v}" for k, v in config.items())))
    return Section(
        key=f"analysis_{analysis.name}",
        title=f"Analysis: {analysis.name}",
        items=list(items),
        summary={"variables": [r["variable"] for r in rows]},
    )
