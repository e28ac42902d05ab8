"""Progress: a bar only on a terminal; elsewhere a log line per interval with rate and ETA."""

from __future__ import annotations

import io
import logging
import sys

import pytest
from tqdm import tqdm

from sae_store.progress import LogProgress, format_duration, progress_bar


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_there_is_no_bar_but_log_lines(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setenv("SAE_STORE_PROGRESS_INTERVAL", "0")
    with caplog.at_level(logging.INFO, logger="sae_store.progress"):
        assert list(progress_bar(range(4), desc="encode", unit="block")) == [0, 1, 2, 3]
    assert sys.stderr.getvalue() == ""  # type: ignore[attr-defined]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("encode: 1/4 block (25%), ") and "block/s, ETA 0:00:" in lines[0]
    assert lines[-1].startswith("encode: 4/4 block in 0:00:00 (")
    assert len(lines) == 5 and all("\r" not in line for line in lines)


def test_interval_limits_the_lines(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setenv("SAE_STORE_PROGRESS_INTERVAL", "3600")
    bar = progress_bar(total=1000, desc="train", unit="step", initial=100)
    with caplog.at_level(logging.INFO, logger="sae_store.progress"), bar:
        for _ in range(900):
            bar.update(1)
        bar.set_postfix(fvu="0.123")
    (line,) = [r.getMessage() for r in caplog.records]  # only the closing line
    assert line.startswith("train: 1000/1000 step in 0:00:00 (") and line.endswith("step/s), fvu=0.123")


def test_on_a_terminal_a_bar_and_disabled_means_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", _Tty())
    assert isinstance(progress_bar(range(3), desc="x"), tqdm)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(progress_bar(range(3), desc="x"), LogProgress)
    quiet = progress_bar(range(3), desc="x", enabled=False)
    assert isinstance(quiet, tqdm) and quiet.disable
    assert isinstance(progress_bar(range(3), desc="x", log_lines=False), tqdm)


def test_eta_and_durations() -> None:
    bar: LogProgress[int] = LogProgress(total=100, desc="extract", unit="sample", interval=1e9)
    bar.started -= 10.0  # ten seconds for the first 25
    bar.update(25)
    assert bar.line().startswith("extract: 25/100 sample (25%), 2.5 sample/s, ETA 0:00:30")
    assert format_duration(3725) == "1:02:05" and format_duration(-1) == "0:00:00"
