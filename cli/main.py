"""Entry point of the ``sae-store`` command.

Each sub-command module (``cli/*_cmds.py``) exposes ``register(subparsers)``, which adds its parsers
and sets ``func`` to a handler taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence
from pathlib import Path

from sae_store._version import __version__
from sae_store.errors import SaeStoreError


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
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _command_modules():
        importlib.import_module(f"{__package__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        code: int = args.func(args)
    except SaeStoreError as e:
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
