"""Entry point of the ``sae-store`` command.

Each sub-command module (``cli/*_cmds.py``) exposes ``COMMANDS``: a function per command name that adds
its parser (with ``func``, the handler taking the parsed namespace and returning an exit code).
Commands are added in pipeline order, so ``--help`` lists them as a run uses them. Building the parser
imports only the config declarations: heavy packages load when a command runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sae_store._version import __version__
from sae_store.errors import SaeStoreError

from .options import PIPELINE_ORDER, READING_COMMANDS, WRITING_COMMANDS, add_verbosity, setup_logging


def _commands() -> dict[str, Callable[[Any], None]]:
    """Every command's parser builder, from the modules of this package named ``*_cmds``."""
    found: dict[str, Callable[[Any], None]] = {}
    for m in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if m.name.endswith("_cmds"):
            found.update(importlib.import_module(f"{__package__}.{m.name}").COMMANDS)
    rank = {name: i for i, name in enumerate(PIPELINE_ORDER)}
    return dict(sorted(found.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args)
    try:
        if args.command in (*WRITING_COMMANDS, *READING_COMMANDS) and getattr(args, "store", None):
            from sae_store.store.core import check_before_work

            # before any work: the message the library would give later
            check_before_work(args.store, writes=args.command in WRITING_COMMANDS)
        code: int = args.func(args)
        sys.stdout.flush()  # a closed pipe shows up here, not at exit
    except BrokenPipeError:  # `sae-store ... --json | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SaeStoreError as e:
        if getattr(args, "json", False):  # --json prints only JSON, errors included
            print(json.dumps({"error": str(e), "command": args.command}))
        print(f"sae-store {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sae-store {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # OS and codec errors: one line naming the file and what to do
        from sae_store.store.explain import explain_error

        message = explain_error(e, getattr(args, "store", None))
        if message is None:
            raise
        print(f"sae-store {args.command}: error: {message}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
