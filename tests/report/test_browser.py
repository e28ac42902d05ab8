"""report.html in a real browser: headless Chromium, offline, over the DevTools protocol.

Chromium is Debian's ``chromium`` package; the fixture installs it with apt-get when it is missing
and the tests run as root (as in CI), and skips with the reason otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sae_store.report import ReportResult
from tests import apt

from .browser import check_page, find_chromium

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of the Chromium executable, installed with apt-get if needed."""
    found = find_chromium()
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    for cmd in apt.commands("chromium"):
        done = subprocess.run(
            cmd, env=apt.ENV, capture_output=True, text=True, timeout=apt.LOCK_WAIT_S + 900, check=False
        )
        if done.returncode != 0:
            pytest.skip(f"installing chromium failed ({' '.join(cmd)}): {done.stderr.strip()[-300:]}")
    found = find_chromium()
    if not found:
        pytest.skip("apt-get installed chromium but no chromium executable is on PATH")
    return found


# Clicks every link of the contents list; for each, where its section's title then is (px from the
# top of the window) and the address's fragment.
_CONTENTS_JS = """
(() => {
  const all = [];
  const walk = (root) => root.querySelectorAll('*').forEach((el) => {
    all.push(el);
    if (el.shadowRoot) walk(el.shadowRoot);
  });
  walk(document);
  const links = all.filter((el) => (el.getAttribute('href') || '').startsWith('#section-'));
  return JSON.stringify(links.map((a) => {
    a.click();
    const id = a.getAttribute('href').slice(1);
    const title = all.find((el) => el.id === id);
    return [id, title ? Math.round(title.getBoundingClientRect().top) : null, location.hash];
  }));
})()
"""


def _check(report: ReportResult, chromium: str, shot: Path, evaluate: tuple[str, ...] = ()):
    page = check_page(report.html, executable=chromium, evaluate=evaluate)
    shot.write_bytes(page.screenshot)
    assert page.bokeh_loaded, "Bokeh's JavaScript did not load (is it inline?)"
    assert page.exceptions == []
    assert page.console_errors == []
    assert page.failed_loads == []
    assert page.external_requests == []
    # nothing cut off, nothing past its card, no sideways scroll
    assert page.layout_problems == [], "\n".join(page.layout_problems)
    assert page.screenshot[:8] == b"\x89PNG\r\n\x1a\n" and len(page.screenshot) > 20_000
    return page


def test_report_with_results_renders_offline(full_report: ReportResult, chromium: str, tmp_path: Path):
    page = _check(full_report, chromium, tmp_path / "full.png", evaluate=(_CONTENTS_JS,))
    # one Bokeh root per document; every figure draws at least one canvas
    n_figures = len(full_report.figures)
    assert page.roots >= 1 and page.canvases >= n_figures
    # the volcano HoloMap carries its frames: moving its slider changes the plotted data
    assert page.slider_changes_plot is True
    # every contents link scrolls its section's title into the window and names it in the address
    (jumps,) = page.evaluated
    assert [j[0] for j in jumps] == [f"section-{key}" for key in full_report.sections]
    for section, top, fragment in jumps:
        assert top is not None and 0 <= top < 1000 and fragment == f"#{section}", jumps
    assert jumps[0][1] <= 2 and jumps[1][1] <= 2  # the first sections: at the very top


def test_layout_check_finds_cut_off_labels_wide_tables_and_sideways_scrolling(chromium: str, tmp_path: Path):
    """The check the reports pass, on a page made to fail it."""
    import holoviews as hv
    import panel as pn
    from bokeh.resources import INLINE

    import sae_store.report.plotting  # noqa: F401  (the Bokeh backend)

    curve = hv.Curve([(0, 0.1), (1, 0.2)], "layer", ("fvu", "FVU (fraction of variance unexplained)"))
    cells = "".join(f"<td>column_{i:02d}_without_spaces</td>" for i in range(12))
    page = pn.Column(
        pn.Card(pn.pane.HoloViews(curve.opts(width=300, height=150, title="a short panel")), title="plot"),
        pn.Card(pn.pane.HTML(f"<table><tr>{cells}</tr></table>"), title="table", width=600),
        pn.pane.HTML('<div style="width: 2000px">wide</div>'),
    )
    html = tmp_path / "bad.html"
    page.save(html, resources=INLINE)
    problems = check_page(html, executable=chromium).layout_problems
    # pixel counts past the first depend on the fonts installed
    assert len(problems) == 3, problems
    assert problems[0] == "the page scrolls sideways: 2020 px wide in a 1440 px window"
    assert re.fullmatch(
        r'a table \("column_00_without_spaces column_01_witho"\) runs \d+ px past the right edge of its card',
        problems[1],
    )
    assert re.fullmatch(
        r'plot "a short panel": its y axis label "FVU \(fraction of variance unexplained\)" '
        r"\(2\d\d px\) is cut off \(150 px of canvas\)",
        problems[2],
    )


def test_report_of_a_bare_store_renders_offline(bare_report: ReportResult, chromium: str, tmp_path: Path):
    page = _check(bare_report, chromium, tmp_path / "bare.png")
    assert page.canvases >= len(bare_report.figures)
    assert page.slider_changes_plot is None


@pytest.mark.slow
def test_demo_report_reads_cleanly(demo_run: Path, chromium: str, tmp_path: Path):
    """The report of the demo's real data (its tables of captions, its 44 samples) passes the layout
    check too: nothing cut off, no table past its card, no sideways scrolling at 1440 px."""
    from sae_store.report import build_report, load_inputs

    report = build_report(load_inputs(demo_run / "store.zarr"), tmp_path / "report")
    _check(report, chromium, tmp_path / "demo.png")
