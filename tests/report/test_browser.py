"""report.html in a real browser: headless Chromium, offline, over the DevTools protocol.

Chromium is Debian's ``chromium`` package; the fixture installs it with apt-get when it is missing
and the tests run as root (as in CI), and skips with the reason otherwise.
"""

from __future__ import annotations

import os
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


def _check(report: ReportResult, chromium: str, shot: Path):
    page = check_page(report.html, executable=chromium)
    shot.write_bytes(page.screenshot)
    assert page.bokeh_loaded, "Bokeh's JavaScript did not load (is it inline?)"
    assert page.exceptions == []
    assert page.console_errors == []
    assert page.failed_loads == []
    assert page.external_requests == []
    assert page.screenshot[:8] == b"\x89PNG\r\n\x1a\n" and len(page.screenshot) > 20_000
    return page


def test_report_with_results_renders_offline(full_report: ReportResult, chromium: str, tmp_path: Path):
    page = _check(full_report, chromium, tmp_path / "full.png")
    # one Bokeh root per document; every figure draws at least one canvas
    n_figures = len(full_report.figures)
    assert page.roots >= 1 and page.canvases >= n_figures
    # the volcano HoloMap carries its frames: moving its slider changes the plotted data
    assert page.slider_changes_plot is True


def test_report_of_a_bare_store_renders_offline(bare_report: ReportResult, chromium: str, tmp_path: Path):
    page = _check(bare_report, chromium, tmp_path / "bare.png")
    assert page.canvases >= len(bare_report.figures)
    assert page.slider_changes_plot is None
