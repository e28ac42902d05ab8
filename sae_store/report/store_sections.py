"""Sections about the store itself: what is on disk (``du``) and which steps have run (``status``)."""

from __future__ import annotations

from collections.abc import Sequence

import holoviews as hv
import matplotlib
import numpy as np
import pandas as pd

from sae_store.report.plotting import COLOURS, FIG_SIZE, WIDTH, layer_ticks, styled
from sae_store.report.section import Figure, Notice, Section, Table, Text
from sae_store.report.steps import StepStatus
from sae_store.store import Completion, Usage
from sae_store.store.usage import quota_problems
from sae_store.units import format_bytes


def usage_section(usage: Usage, *, quota: int | None = None, inode_quota: int | None = None) -> Section:
    """Bytes and files on disk, compression of the activations, projected size against quotas."""
    problems = quota_problems(usage, quota=quota, inode_quota=inode_quota)
    lines = [
        f"- **On disk:** {format_bytes(usage.disk_bytes)} in {usage.files:,} files "
        f"(logical size {format_bytes(usage.logical_bytes)})",
        f"- **Activations:** {format_bytes(usage.activation_disk_bytes)}, {usage.bytes_per_value:.3f} bytes "
        f"per value, compression {usage.compression_ratio:.2f}x vs float32 "
        f"({usage.fraction_complete:.1%} of the activations written)",
        f"- **Projected when complete:** {format_bytes(usage.projected_disk_bytes)} in "
        f"{usage.projected_files:,} files; {format_bytes(usage.free_bytes)} free on the filesystem",
    ]
    if quota is not None:
        lines.append(
            f"- **Byte quota:** {format_bytes(quota)} ({usage.projected_disk_bytes / quota:.1%} projected)"
        )
    if inode_quota is not None:
        lines.append(
            f"- **File quota:** {inode_quota:,} ({usage.projected_files / inode_quota:.1%} projected)"
        )
    items: list = [Text("\n".join(lines))]
    items += [Notice(f"**Quota:** {p}", level="danger") for p in problems]

    rows = sorted(usage.variables.items(), key=lambda kv: -kv[1].disk_bytes)
    unit, scale = _unit(max((v.disk_bytes for _, v in rows), default=0))
    frame = pd.DataFrame(
        {
            "variable": [name for name, _ in rows],
            f"on disk ({unit})": [v.disk_bytes / scale for _, v in rows],
            "files": [v.files for _, v in rows],
            f"logical ({unit})": [v.logical_bytes / scale for _, v in rows],
        }
    )
    # the largest variables, the rest summed: dozens of tiny variables would make unreadable labels
    top = frame.head(_TOP_VARIABLES)[["variable", f"on disk ({unit})"]]
    rest = frame.iloc[_TOP_VARIABLES:]
    if len(rest):
        other = pd.DataFrame(
            {"variable": [f"{len(rest)} others"], f"on disk ({unit})": [rest.iloc[:, 1].sum()]}
        )
        top = pd.concat([top, other], ignore_index=True)
    bars = hv.Bars(top.iloc[::-1], "variable", f"on disk ({unit})")  # largest at the top
    opts = {"title": "Store: bytes on disk per variable", "invert_axes": True, "color": COLOURS["male"]}
    items.append(
        Figure(
            "store_usage",
            f"Bytes on disk of the {min(len(frame), _TOP_VARIABLES)} largest variables and groups "
            "of the store "
            "(from `sae-store du`); the table below lists all.",
            styled(
                bars.clone(),
                common=opts,
                bokeh={"width": WIDTH, "height": 60 + 24 * len(top), "tools": ["hover"]},
            ),
            styled(bars.clone(), common=opts, mpl={"fig_size": FIG_SIZE, "aspect": 2.0}),
        )
    )
    if usage.activations_by_layer:
        by_layer = sorted(usage.activations_by_layer.items(), key=lambda kv: int(kv[0]))
        layer_unit, layer_scale = _unit(max(v for _, v in by_layer))
        layer_bars = hv.Bars(
            [(k, v / layer_scale) for k, v in by_layer], "layer", f"activations ({layer_unit})"
        )
        # one label per layer: upright while they fit, turned beyond ~20 layers
        opts = {
            "title": "Activations on disk per layer",
            "color": COLOURS["male"],
            "xrotation": 90 if len(by_layer) > 20 else 0,
        }
        items.append(
            Figure(
                "store_usage_layers",
                "Compressed activation bytes per layer (all languages).",
                styled(
                    layer_bars.clone(), common=opts, bokeh={"width": WIDTH, "height": 260, "tools": ["hover"]}
                ),
                styled(
                    layer_bars.clone(),
                    common=opts,
                    mpl={"fig_size": int(FIG_SIZE * max(1.0, len(by_layer) / 24)), "aspect": 3},
                ),
            )
        )
    items.append(Table(frame, "Per variable"))
    return Section(
        key="store_usage",
        title="Store usage",
        items=items,
        summary={**usage.to_dict(), "problems": problems, "quota": quota, "inode_quota": inode_quota},
        status="partial" if problems else "ok",
    )


_TOP_VARIABLES = 12
#: "Greens" up to its middle: from white to a medium green, under black text.
_GREENS = [matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["Greens"](np.linspace(0.0, 0.55, 64))]


def _unit(largest: float) -> tuple[str, float]:
    """The byte unit in which ``largest`` reads best (B, KB, MB, GB, TB)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if largest >= scale:
            return unit, scale
    return "B", 1.0


def _grid_frame(grids: dict[str, Completion]) -> pd.DataFrame:
    rows = []
    for step, comp in grids.items():
        # per (layer, language): the block fractions weighted by block size (the last may be short)
        sizes = np.array([b - a for a, b in comp.blocks], dtype=float)
        frac = (comp.done * sizes).sum(axis=-1) / sizes.sum()
        for i, layer in enumerate(comp.layers):
            for j, lang in enumerate(comp.languages):
                rows.append(
                    {"step": f"{step} {lang}", "layer": int(layer), "fraction written": float(frac[i, j])}
                )
    return pd.DataFrame(rows)


def completeness_section(steps: Sequence[StepStatus], grids: dict[str, Completion]) -> Section:
    """Which steps ran, what is missing per layer and language, and the commands that fill it.

    ``grids`` maps a step name (``"extract"``, ``"encode"``) to its completion flags.
    """
    table = pd.DataFrame(
        {
            "step": [s.step for s in steps],
            "state": [s.state for s in steps],
            "detail": [s.detail for s in steps],
        }
    )
    commands = list(dict.fromkeys(c for s in steps for c in s.commands))  # caption is named twice
    done = sum(s.state == "done" for s in steps)
    items: list = [Text(f"{done} of {len(steps)} steps complete."), Table(table, max_rows=len(table))]
    if commands:
        items.append(
            Notice("**To fill what is missing, run:**\n\n```\n" + "\n".join(commands) + "\n```", "info")
        )
    frame = _grid_frame(grids)
    if not frame.empty:
        heat = hv.HeatMap(frame, ["step", "layer"], "fraction written")
        common = {
            "title": "Completion per layer and language",
            "cmap": _GREENS,  # light greens only: the black value labels stay readable
            "clim": (0, 1),
            "colorbar": True,
            "invert_yaxis": True,
            "xrotation": 0,
            "yticks": layer_ticks(frame["layer"], most=17),
        }
        n_layers = frame["layer"].nunique()
        items.insert(
            1,
            Figure(
                "completeness",
                "Fraction of samples whose completion flag is set, per layer (rows) and step x language "
                "(columns), read from the store's `complete` flags.",
                styled(
                    heat.clone(),
                    common=common,
                    bokeh={
                        "width": 200 + 110 * frame["step"].nunique(),
                        "height": 140 + 16 * n_layers,
                        "tools": ["hover"],
                    },
                ),
                styled(
                    heat.clone(),
                    common=common,
                    # the value in each cell while the rows are tall enough to hold it
                    mpl={"fig_size": FIG_SIZE, "aspect": 0.8, "show_values": n_layers <= 12},
                ),
            ),
        )
    return Section(
        key="completeness",
        title="Completeness",
        items=items,
        summary={
            "steps": [
                {"step": s.step, "state": s.state, "detail": s.detail, "commands": s.commands} for s in steps
            ],
            **{f"{name}_remaining": comp.remaining() for name, comp in grids.items()},
        },
        status="ok" if done == len(steps) else "partial",
    )
