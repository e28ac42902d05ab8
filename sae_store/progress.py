"""Progress of long loops: a tqdm bar on a terminal, a log line per interval everywhere else.

A SLURM ``.out`` file or a redirected log is not a terminal: a tqdm bar there becomes one line of
thousands of carriage returns. :func:`progress_bar` draws the bar only when stderr is a terminal;
otherwise it logs ``desc: 120/500 step (24%), 3.2 step/s, ETA 0:01:58`` at most once per
:data:`LOG_INTERVAL_S` seconds (``SAE_STORE_PROGRESS_INTERVAL`` overrides it) and a closing line with
the total time. Every long loop of the package goes through it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypedDict, TypeVar, Unpack, overload

from tqdm import tqdm

T = TypeVar("T")
log = logging.getLogger("sae_store.progress")

#: Seconds between progress log lines off a terminal.
LOG_INTERVAL_S = 30.0


def _interval() -> float:
    try:
        return max(float(os.environ.get("SAE_STORE_PROGRESS_INTERVAL", LOG_INTERVAL_S)), 0.0)
    except ValueError:
        return LOG_INTERVAL_S


def format_duration(seconds: float) -> str:
    """``3725`` -> ``"1:02:05"``; hours grow past 24 rather than adding days."""
    s = max(round(seconds), 0)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class LogProgress(Generic[T]):
    """The subset of tqdm's interface the package uses, reporting through :mod:`logging`.

    Iterate it (each item counts one), or call :meth:`update`; :meth:`set_postfix` values are
    appended to the lines. Used as a context manager or iterated to the end, it logs a closing line.
    """

    def __init__(
        self,
        iterable: Iterable[T] | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        interval: float | None = None,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit = total, desc or "progress", unit
        self.n = self.initial = initial
        self.interval = _interval() if interval is None else interval
        self.started = self.last = time.monotonic()
        self.postfix = ""
        self.closed = False

    def __iter__(self) -> Iterator[T]:
        assert self.iterable is not None, "LogProgress without an iterable is updated, not iterated"
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LogProgress[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += int(n)
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            log.info("%s", self.line(now))

    def set_postfix(
        self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kw: Any
    ) -> None:
        values = {**(ordered_dict or {}), **kw}
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def line(self, now: float | None = None) -> str:
        """``desc: n/total unit (pct), rate unit/s, ETA h:mm:ss[, postfix]``."""
        elapsed = max((time.monotonic() if now is None else now) - self.started, 1e-9)
        rate = (self.n - self.initial) / elapsed
        parts = [f"{self.desc}: {self.n}" + (f"/{self.total}" if self.total else "") + f" {self.unit}"]
        if self.total:
            parts[0] += f" ({self.n / self.total:.0%})"
        parts.append(f"{rate:.3g} {self.unit}/s")
        if self.total and rate > 0:
            parts.append(f"ETA {format_duration((self.total - self.n) / rate)}")
        if self.postfix:
            parts.append(self.postfix)
        return ", ".join(parts)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.n > self.initial:
            elapsed = time.monotonic() - self.started
            rate = (self.n - self.initial) / max(elapsed, 1e-9)
            done = f"{self.desc}: {self.n}" + (f"/{self.total}" if self.total else "")
            post = f", {self.postfix}" if self.postfix else ""
            log.info(
                "%s %s in %s (%.3g %s/s)%s", done, self.unit, format_duration(elapsed), rate, self.unit, post
            )


def on_terminal() -> bool:
    """Whether stderr (where bars are drawn) is a terminal."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class _BarOptions(TypedDict, total=False):
    total: int | None
    desc: str
    unit: str
    initial: int
    enabled: bool
    log_lines: bool
    leave: bool


@overload
def progress_bar(iterable: Iterable[T], **options: Unpack[_BarOptions]) -> tqdm[T] | LogProgress[T]: ...
@overload
def progress_bar(iterable: None = None, **options: Unpack[_BarOptions]) -> tqdm[Any] | LogProgress[Any]: ...


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    enabled: bool = True,
    log_lines: bool = True,
    leave: bool = True,
) -> tqdm[Any] | LogProgress[Any]:
    """A progress reporter over ``iterable`` (or updated by hand with ``total``).

    Parameters
    ----------
    enabled
        ``False`` (``--no-progress``) shows nothing at all.
    log_lines
        Off a terminal, log a line per interval; ``False`` for loops that log their own lines.
    leave
        Keep the bar on screen when done (terminal only).

    Returns
    -------
    tqdm or LogProgress
        Iterate it, or use it as a context manager and call ``update(n)`` / ``set_postfix(...)``.
    """
    if enabled and on_terminal():
        return tqdm(
            iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, dynamic_ncols=True
        )
    if enabled and log_lines:
        return LogProgress(iterable, total=total, desc=desc, unit=unit, initial=initial)
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=True)
