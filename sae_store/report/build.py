"""Writing the report: sections -> report.html, report.md (+ PNGs) and summary.json."""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sae_store._version import __version__
from sae_store.analyze.results import to_jsonable
from sae_store.errors import SaeStoreError
from sae_store.report.assemble import report_sections
from sae_store.report.html import write_html
from sae_store.report.inputs import ReportInputs
from sae_store.report.markdown import write_markdown

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
        f"Store `{inputs.store.path}` (model `{model}`; {len(inputs.layout.layers)} layers, languages "
        f"{', '.join(inputs.layout.languages)}; {inputs.store.layout.n_samples} samples; created "
        f"{info.get('created', '?')}). Generated {_dt.datetime.now().isoformat(timespec='seconds')} by "
        f"sae-store {__version__}. Every number is read from the store and the result files."
    )


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
