"""Entry point of the ``sae-store`` command.

Each sub-command module (``cli/*_cmds.py``) exposes ``register(subparsers)``, which adds its parsers
and sets ``func`` to a handler taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
from collections.abc import Sequence
from pathlib import Path

from sae_store._version import __version__
from sae_store.errors import SaeStoreError

from .options import finish_parser, setup_logging


def _command_modules() -> list[str]:
    """Modules of this package named ``*_cmds``; each adds its own sub-commands."""
    return sorted(
        m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.endswith("_cmds")
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sae-store",
        description="Activation store, SAE training and bias analyses for vision-language models.",
    )
    parser.add_argument("--version", action="version", version=f"sae-store {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _command_modules():
        importlib.import_module(f"{__package__}.{name}").register(subparsers)
    finish_parser(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args)
    try:
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
