"""The options every command shares, defined once: one flag, one metavar and one syntax per concept.

``--layers SPEC`` (``0-33``, ``10,22``), ``--languages LANGS``, ``--device``, ``--overwrite``
(with hidden deprecated aliases), ``--json``, and ``-v``/``-q``, which work before and after the
sub-command. :func:`finish_parser` gives every (sub-)parser the help formatter that shows each
default, a description, and the sub-commands in pipeline order.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from sae_store.progress import on_terminal

#: Sub-commands in the order a run uses them (``sae-store --help`` lists them so); others follow.
PIPELINE_ORDER = (
    "demo", "make-demo-data", "make-tiny-model", "prepare", "init", "extract", "append", "unlock",
    "migrate", "status", "du", "verify", "train", "encode", "analyze", "caption", "intervene",
    "intervene-summary", "report", "explore", "pipeline", "jobs",
)  # fmt: skip
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"  # with the date: jobs run for days
ANALYSIS_ORDER = ("bias", "crosslingual", "crosslayer", "interpret", "visual", "qualitative", "all")
JOBS_ORDER = ("example", "render", "submit", "status", "cancel")


class HelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to every option whose help does not already say its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or default is None
            or default is False
            or default in (argparse.SUPPRESS, [], ())
            or not action.option_strings
            or isinstance(action, argparse._StoreConstAction | argparse._VersionAction)
        ):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, list | tuple) else default
        return f"{text} (default: {shown})" if text else f"(default: {shown})"


def add_layers(p: argparse.ArgumentParser, what: str, default: str) -> None:
    """``--layers SPEC``, parsed by the command (``parse_layer_spec``) so that a bad value is one line."""
    p.add_argument(
        "--layers",
        metavar="SPEC",
        help=f"{what}: indices and ranges such as 0-33, 10,22 or 0-3,10 (default: {default})",
    )


def add_languages(p: argparse.ArgumentParser, what: str, default: str) -> None:
    p.add_argument("--languages", metavar="LANGS", help=f"{what}, e.g. en,ar (default: {default})")


def add_device(p: argparse.ArgumentParser, default: str = "auto") -> None:
    p.add_argument(
        "--device",
        default=default,
        metavar="DEVICE",
        help="auto (a GPU if there is one), cpu, cuda or cuda:N",
    )


def add_overwrite(p: argparse.ArgumentParser, what: str, *, old: Sequence[str] = ()) -> None:
    """``--overwrite``; ``old`` flags still work for one release, hidden from ``--help``."""
    p.add_argument("--overwrite", action="store_true", help=what)
    for flag in old:
        p.add_argument(flag, action=_Deprecated, dest="overwrite", nargs=0, help=argparse.SUPPRESS)


class _Deprecated(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, *_: Any) -> None:
        print(f"{parser.prog}: {self.option_strings[0]} is deprecated; use --overwrite", file=sys.stderr)
        setattr(namespace, self.dest, True)


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print only JSON (errors too), for scripts")


def add_verbosity(p: argparse.ArgumentParser, *, top: bool) -> None:
    """``-v``/``-q``; below the top level they default to SUPPRESS so they don't undo the top's."""
    extra: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "-v", "--verbose", action="store_true", help="also log sae-store's debug messages", **extra
    )
    g.add_argument("-q", "--quiet", action="store_true", help="log only warnings and errors", **extra)


def _subparsers(p: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _ordered(sub: argparse._SubParsersAction, order: Sequence[str]) -> None:
    rank = {name: i for i, name in enumerate(order)}
    sub._choices_actions.sort(key=lambda a: rank.get(a.dest, len(rank)))


def finish_parser(p: argparse.ArgumentParser, *, top: bool = True) -> None:
    """Every parser below ``p``: the defaults formatter, a description, ``-v``/``-q``, pipeline order."""
    p.formatter_class = HelpFormatter
    sub = _subparsers(p)
    if sub is None:
        add_verbosity(p, top=False)
        return
    if top:
        add_verbosity(p, top=True)
    order: Sequence[str] = PIPELINE_ORDER if p.prog == "sae-store" else ()
    if p.prog.endswith(" analyze"):
        order = ANALYSIS_ORDER
    elif p.prog.endswith(" jobs"):
        order = JOBS_ORDER
    _ordered(sub, order)
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, child in sub.choices.items():
        if child.description is None and helps.get(name):
            child.description = str(helps[name])[:1].upper() + str(helps[name])[1:] + "."
        finish_parser(child, top=False)


def setup_logging(args: argparse.Namespace) -> None:
    """INFO by default with dated timestamps; ``-q`` warnings only; ``-v`` sae-store's debug only
    (zarr, asyncio, urllib3, matplotlib and the rest stay at INFO). A handler already installed (an
    embedding application, pytest) is kept."""
    quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
    if not on_terminal():  # Hugging Face's own bars (loading weights) would fill a SLURM .out with \r
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
        root.addHandler(handler)
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    logging.getLogger("sae_store").setLevel(
        logging.DEBUG if verbose else logging.WARNING if quiet else logging.NOTSET
    )
