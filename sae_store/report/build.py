"""Assembling the report: inputs -> sections -> report.html, report.md (+ PNGs) and summary.json."""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from sae_store._version import __version__
from sae_store.analyze.results import to_jsonable
from sae_store.analyze.run_bias import BIAS_JSON
from sae_store.errors import SaeStoreError
from sae_store.report.bias_sections import bias_layers_section, volcano_section
from sae_store.report.html import write_html
from sae_store.report.inputs import ReportInputs
from sae_store.report.markdown import write_markdown
from sae_store.report.section import Section, not_run_section
from sae_store.report.steps import pipeline_steps
from sae_store.report.store_sections import completeness_section, usage_section

TITLE = "Gender bias in SAE features: report"


@dataclass(frozen=True)
class ReportResult:
    """Where the report was written, and what it holds."""

    html: Path
    markdown: Path
    summary: Path
    figures: list[Path]
    sections: dict[str, str]
    """Status of every section by key: ``ok``, ``partial`` or ``not run``."""
    seconds: float


def check_writable(out_dir: Path) -> None:
    """Create ``out_dir`` if needed and make sure files can be written in it.

    Raises
    ------
    SaeStoreError
        The folder cannot be created or written (permissions, a file in the way, read-only disk).
    """
    probe = out_dir / f".write-test-{os.getpid()}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise SaeStoreError(
            f"cannot write the report to {str(out_dir)!r}: {e.strerror or e}; choose a writable folder "
            "with --out"
        ) from e


def _intro(inputs: ReportInputs) -> str:
    attrs = inputs.store.attrs
    model = attrs.get("model", {}).get("name_or_path", "?")
    info = attrs.get("sae_store", {})
    return (
        f"Store `{inputs.store.path}` (model `{model}`; {len(inputs.layers)} layers, languages "
        f"{', '.join(inputs.languages)}; {inputs.store.layout.n_samples} samples; created "
        f"{info.get('created', '?')}). Generated {_dt.datetime.now().isoformat(timespec='seconds')} by "
        f"sae-store {__version__}. Every number is read from the store and the result files."
    )


def _bias_layers(inputs: ReportInputs, store: str) -> Section:
    bias = inputs.result(BIAS_JSON)
    if bias is None:
        return not_run_section(
            "bias_layers",
            "Bias across layers",
            f"Needs the bias results (`{BIAS_JSON}` in the results folder).",
            [f"sae-store analyze bias {store}"],
        )
    return bias_layers_section(bias)


def _volcano(inputs: ReportInputs, store: str) -> Section:
    ds = inputs.analysis("bias")
    if ds is None:
        return not_run_section(
            "volcano",
            "Volcano plots per layer and language",
            "Needs the store's `analysis/bias` group.",
            [f"sae-store analyze bias {store}"],
        )
    return volcano_section(ds)


def report_sections(inputs: ReportInputs) -> list[Section]:
    """All sections in reading order; each missing input gives a "not run yet" section."""
    store = shlex.quote(str(inputs.store.path))
    grids = {"extract": inputs.extraction}
    if inputs.features is not None:
        grids["encode"] = inputs.features
    builders: list[Callable[[], Section]] = [
        lambda: completeness_section(pipeline_steps(inputs), grids),
        lambda: _bias_layers(inputs, store),
        lambda: _volcano(inputs, store),
        lambda: usage_section(inputs.usage, quota=inputs.quota, inode_quota=inputs.inode_quota),
    ]
    return [build() for build in tqdm(builders, desc="report sections", unit="section", leave=False)]


def build_report(inputs: ReportInputs, out_dir: str | Path) -> ReportResult:
    """Write ``report.html``, ``report.md`` (with ``figures/*.png``) and ``summary.json`` to ``out_dir``.

    Raises
    ------
    SaeStoreError
        ``out_dir`` cannot be written.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    check_writable(out)
    sections = report_sections(inputs)
    intro = _intro(inputs)
    html = write_html(sections, out / "report.html", title=TITLE, intro=intro)
    figures = write_markdown(sections, out, title=TITLE, intro=intro)
    summary = {
        "title": TITLE,
        "store": str(inputs.store.path),
        "sae_store_version": __version__,
        "sections": {s.key: {"title": s.title, "status": s.status, **s.summary} for s in sections},
    }
    summary_path = out / "summary.json"
    summary_path.write_text(
        json.dumps(to_jsonable(summary), indent=2, allow_nan=False, ensure_ascii=False), encoding="utf-8"
    )
    return ReportResult(
        html=html,
        markdown=out / "report.md",
        summary=summary_path,
        figures=figures,
        sections={s.key: s.status for s in sections},
        seconds=time.perf_counter() - start,
    )
