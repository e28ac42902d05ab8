"""Entry point of the ``sae-store`` command.

Each sub-command module (``cli/*_cmds.py``) exposes ``COMMANDS``: a function per command name that adds
its parser (with ``func``, the handler taking the parsed namespace and returning an exit code).
Commands are added in pipeline order, so ``--help`` lists them as a run uses them. Building the parser
imports only the config declarations: heavy packages load when a command runs.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import pkgutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sae_store._version import __version__
from sae_store.errors import SaeStoreError

from .logs import add_verbosity, setup_logging
from .parser import PIPELINE_ORDER, READING_COMMANDS, WRITING_COMMANDS, Parser, UsageError


def _commands() -> dict[str, Callable[[Any], None]]:
    """Every command's parser builder, from the modules of this package named ``*_cmds``."""
    found: dict[str, Callable[[Any], None]] = {}
    for m in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if m.name.endswith("_cmds"):
            found.update(importlib.import_module(f"{__package__}.{m.name}").COMMANDS)
    rank = {name: i for i, name in enumerate(PIPELINE_ORDER)}
    return dict(sorted(found.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="sae-store",
        description="Activation store, SAE training and bias analyses for vision-language models.",
    )
    parser.add_argument("--version", action="version", version=f"sae-store {__version__}")
    add_verbosity(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _commands().values():
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:  # printed on stderr already
        if "--json" in argv:  # --json prints only JSON, errors included
            print(json.dumps({"error": e.message, "command": e.command}))
        return 2
    setup_logging(args)
    if isinstance(
        sys.stdout, io.TextIOWrapper
    ):  # results and log lines in the order they happen, also in a file
        sys.stdout.reconfigure(line_buffering=True)
    try:
        store = getattr(args, "store", None)
        # an existing store only: a missing one is the command's own error, after its arguments are checked
        if args.command in (*WRITING_COMMANDS, *READING_COMMANDS) and store and Path(store).exists():
            from sae_store.store.core import check_before_work

            # before any work: the message the library would give later
            check_before_work(store, writes=args.command in WRITING_COMMANDS)
        code: int = args.func(args)
        sys.stdout.flush()  # a closed pipe shows up here, not at exit
    except BrokenPipeError:  # `sae-store ... --json | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SaeStoreError as e:
        return _fail(args, str(e))
    except KeyboardInterrupt:
        print(f"sae-store {args.command_name}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # OS and codec errors: one line naming the file and what to do
        from sae_store.store.explain import explain_error

        message = explain_error(e, getattr(args, "store", None))
        if message is None:
            raise
        return _fail(args, message)
    return code


def _fail(args: argparse.Namespace, message: str) -> int:
    if args.json:  # --json prints only JSON, errors included
        print(json.dumps({"error": message, "command": args.command_name}))
    print(f"sae-store {args.command_name}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
