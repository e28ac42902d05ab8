"""Run ``sae-store explore`` as a real server process for the tests and the benchmark."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_explorer(
    store: Path, *extra: str, timeout: float = 120
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start the explorer on a free port; yields its URL and process (stopped on exit)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sae_store_cli", "explore", str(store), "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    lines = []
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the explorer exited: {''.join(lines)}")
            lines.append(line)
            if "serving on" in line:
                break
        else:
            raise TimeoutError(f"the explorer did not start: {''.join(lines)}")
        url = f"http://127.0.0.1:{port}/"
        _wait_http(url, deadline)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_http(url: str, deadline: float) -> None:
    import urllib.request

    while True:
        try:
            with urllib.request.urlopen(url + "?page=none", timeout=30):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
