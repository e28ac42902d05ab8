"""What a command writes besides its result: dated log lines of sae-store's own progress and warnings,
nothing of the libraries below it unless it is a warning that needs the user.

- sae-store's loggers log INFO (``-q``: warnings only; ``-v``: also its debug messages); every other
  library logs only warnings, so zarr, asyncio, urllib3 and matplotlib add no INFO lines.
- Warnings that say nothing the user can act on are dropped where they arise: zarr's note that
  consolidated metadata is not in the Zarr v3 specification (the store consolidates on purpose,
  docs/store-schema.md), and matplotlib's "building the font cache" on its first run.
"""

from __future__ import annotations

import argparse
import logging
import os
import warnings
from typing import Any

from sae_store.progress import on_terminal

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"  # with the date: jobs run for days

#: (module prefix of the warning, start of its message) of the Python warnings dropped.
QUIET_WARNINGS = (("zarr", "Consolidated metadata is currently not part in the Zarr format 3"),)
#: (logger, start of the message) of library log records dropped.
QUIET_RECORDS = (("matplotlib.font_manager", "Matplotlib is building the font cache"),)


def add_verbosity(p: argparse.ArgumentParser, *, top: bool) -> None:
    """``-v``/``-q``; below the top level they default to SUPPRESS so they don't undo the top's."""
    extra: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "-v", "--verbose", action="store_true", help="also log sae-store's debug messages", **extra
    )
    g.add_argument("-q", "--quiet", action="store_true", help="log only warnings and errors", **extra)


class _Drop(logging.Filter):
    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)


def setup_logging(args: argparse.Namespace) -> None:
    """sae-store's messages at INFO with dated timestamps (``-q`` warnings only, ``-v`` its debug
    messages too); other libraries' at WARNING. A handler already installed (an embedding application,
    pytest) is kept."""
    quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
    if not on_terminal():  # Hugging Face's own bars (loading weights) would fill a SLURM .out with \r
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("sae_store").setLevel(
        logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    )
    for module, start in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=f"^{start}", module=module)
    for name, start in QUIET_RECORDS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Drop) and f.start == start for f in logger.filters):
            logger.addFilter(_Drop(start))
