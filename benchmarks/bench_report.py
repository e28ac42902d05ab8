"""Report: generation time and size of report.html on a small store and on a 34-layer store.

1. ``build_report`` on a small synthetic store (3 layers, 2 languages, 40 samples, 64 features,
   every analysis and intervention result written by the pipeline's own code) and on a synthetic
   34-layer store (200 samples, 2,048 features: above the volcano plot's 2,000 drawn background
   points per frame, so the page is as large as with 20,480 features), with the time split into
   loading, sections, HTML and PNGs, and the size of report.html.
2. Views switched in the browser (``report.switcher``) vs Panel's embedding of HoloMap widget
   states, on the small store's volcano plots alone and on all its figures in one page: the reason
   the report does not use Panel's embed (not run on the 34-layer store: it takes far too long).
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import holoviews as hv
import panel as pn
from bokeh.resources import INLINE

from benchmarks.run import result
from sae_store.report import build_report, load_inputs, report_sections
from sae_store.report.html import write_html
from sae_store.report.markdown import write_markdown
from sae_store.report.section import Frames, Section
from tests.report.synthetic import make_store, write_results

STORES = {
    "small (3 layers, 40 samples, 64 features)": {"n_layers": 3, "n_samples": 40, "n_features": 64},
    "34 layers (200 samples, 2,048 features)": {"n_layers": 34, "n_samples": 200, "n_features": 2048},
}


def _make(root: Path, n_layers: int, n_samples: int, n_features: int) -> Path:
    store = make_store(root / "store.zarr", n_layers=n_layers, n_samples=n_samples, samples_per_shard=20)
    write_results(
        store, root / "results", saes_dir=root / "saes", n_features=n_features, bootstrap=50, permutations=0
    )
    return store.path


def _timed_report(store: Path, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    inputs = load_inputs(store)
    t1 = time.perf_counter()
    sections = report_sections(inputs)
    t2 = time.perf_counter()
    write_html(sections, out / "report.html", title="bench", intro="")
    t3 = time.perf_counter()
    pngs = write_markdown(sections, out, title="bench", intro="")
    t4 = time.perf_counter()
    full = build_report(inputs, out / "full")
    return {
        "load_s": t1 - t0,
        "sections_s": t2 - t1,
        "html_s": t3 - t2,
        "png_s": t4 - t3,
        "total_s": full.seconds,
        "html_mb": full.html.stat().st_size / 1e6,
        "pngs": len(pngs),
        "figures": sum(len(s.figures) for s in sections),
        "sections": sections,
    }


def _holomap(obj: Any) -> Any:
    """The HoloViews object Panel would embed: Frames become a HoloMap (of Layouts: collated)."""
    if not isinstance(obj, Frames):
        return obj
    holomap = hv.HoloMap(obj.views, kdims=list(obj.kdims))
    return holomap.collate() if isinstance(next(iter(obj.views.values())), hv.Layout) else holomap


def _embed_vs_switcher(sections: list[Any], out: Path) -> tuple[float, float, int]:
    """Seconds to write the figures of ``sections`` with the switcher and with Panel's state embedding."""
    figures = [Section(s.key, s.title, list(s.figures)) for s in sections if s.figures]
    t0 = time.perf_counter()
    write_html(figures, out / "switcher.html", title="figures", intro="")
    switcher = time.perf_counter() - t0
    t0 = time.perf_counter()
    panes = [
        pn.pane.HoloViews(_holomap(f.interactive), backend="bokeh", linked_axes=False).layout
        for s in figures
        for f in s.items
    ]
    pn.Column(*panes).save(io.StringIO(), resources=INLINE, embed=True, progress=False)
    views = sum(
        len(f.interactive.views) for s in figures for f in s.items if isinstance(f.interactive, Frames)
    )
    return switcher, time.perf_counter() - t0, views


def main() -> dict[str, Any]:
    warnings.filterwarnings("ignore")
    root = Path(tempfile.mkdtemp(prefix="bench-report-"))
    rows, embed_rows, results = [], [], {}
    try:
        for name, sizes in STORES.items():
            folder = root / name.split()[0]
            folder.mkdir()
            print(f"  building {name} ...", flush=True)
            store = _make(folder, **sizes)
            r = _timed_report(store, folder / "report")
            sections = r.pop("sections")
            results[name] = r
            if sizes["n_layers"] <= 3:
                for what, chosen in (
                    ("volcano plots", [s for s in sections if s.key == "volcano"]),
                    ("every figure", sections),
                ):
                    switcher, embed, n = _embed_vs_switcher(chosen, folder)
                    results[name][f"{what}: switcher_s, embed_s, views"] = (switcher, embed, n)
                    embed_rows.append(
                        f"| {what} | {n} | {switcher:.1f} | {embed:.1f} | {embed / switcher:.1f}x |"
                    )
            rows.append(
                f"| {name} | {r['total_s']:.1f} | {r['load_s']:.1f} | {r['sections_s']:.1f} | "
                f"{r['html_s']:.1f} | {r['png_s']:.1f} | {r['html_mb']:.1f} | {r['figures']} / {r['pngs']} |"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    small, big = (results[k] for k in STORES)
    return result(
        "Report generation",
        [
            "| store | report (s) | load | sections | HTML | PNGs | report.html (MB) | figures / PNGs |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            f"34 layers vs small: {big['total_s'] / small['total_s']:.1f}x the time, "
            f"{big['html_mb'] / small['html_mb']:.1f}x the HTML size. The sections' time is reading the "
            "results; about 3 MB of every report.html is the inlined Bokeh/Panel JavaScript and CSS. "
            "(The report column repeats the build end to end, so it is not the sum of the parts.)",
            "",
            "Small store: views switched in the browser (`report/switcher.py`) vs Panel's embedding of the "
            "equivalent HoloMaps' widget states (seconds to write the HTML of the figures alone). Alone, "
            "one HoloMap embeds as fast; with several in one page Panel's embedding grows much faster "
            "than the number of views, which is why the report switches views itself.",
            "",
            "| figures | views | switcher (s) | Panel embed (s) | ratio |",
            "| --- | ---: | ---: | ---: | ---: |",
            *embed_rows,
        ],
        **results,
    )


if __name__ == "__main__":
    main()
