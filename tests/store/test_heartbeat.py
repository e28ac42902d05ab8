"""The heartbeat of a running extraction: touching its claim files, and saying once when it cannot."""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from sae_store.store import heartbeat
from sae_store.store.heartbeat import Heartbeat


def _beat_until(beat: Heartbeat, touched: list[object], n: int) -> None:
    """Run ``beat`` until it has tried ``n`` touches (or 30 s passed), then stop it."""
    beat.start()
    deadline = time.monotonic() + 30
    while len(touched) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    beat.stopped.set()
    beat.join(timeout=5)
    assert not beat.is_alive()


def _count_touches(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    touched: list[object] = []
    utime = os.utime

    def counting(path: object, *args: object, **kwargs: object) -> None:
        touched.append(path)
        utime(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(heartbeat, "HEARTBEAT_S", 0.01)
    monkeypatch.setattr(os, "utime", counting)
    return touched


def test_the_heartbeat_touches_its_claim_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    claim = tmp_path / "block-0.claim"
    claim.touch()
    old = time.time() - 3600
    os.utime(claim, (old, old))
    touched = _count_touches(monkeypatch)
    _beat_until(Heartbeat([claim]), touched, 3)
    assert claim.stat().st_mtime > old + 3000


def test_the_heartbeat_logs_its_first_error_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / ".sae-store-locks"
    folder.mkdir()
    paths = [folder / "block-0.claim", folder / "block-1.claim"]
    for path in paths:
        path.touch()
    shutil.rmtree(folder)  # removed by hand while the extraction runs
    touched = _count_touches(monkeypatch)
    with caplog.at_level(logging.WARNING, logger=heartbeat.__name__):
        _beat_until(Heartbeat(paths), touched, 10)
    assert len(touched) >= 10  # several beats, each failing on both files
    records = [r for r in caplog.records if r.name == heartbeat.__name__]
    assert [r.levelno for r in records] == [logging.WARNING], [r.getMessage() for r in records]
    assert re.fullmatch(
        r"the heartbeat could not touch claim file '.*block-0\.claim' \(\[Errno 2\] No such file or "
        r"directory\); other hosts take this extraction for dead after 600 s without one and may take its "
        r"shard blocks over\. Further errors of this kind are not logged",
        records[0].getMessage(),
    ), records[0].getMessage()
