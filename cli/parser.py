"""The parser conventions every command follows.

- An error is one line, ``sae-store COMMAND: error: what (`sae-store COMMAND --help` lists the
  options)``, exit status 2; an unknown option names the closest one the command has (``--layers`` ->
  ``--layer``), and a required option given by an old name still counts.
- :func:`add_command` describes a command from its handler's docstring, accepts ``-v``/``-q`` after it
  and gives it ``--json``: :func:`show` then prints the result as one JSON object instead of lines.
- :func:`add_old_name` keeps a renamed option working for one release, hidden from ``--help``, with a
  warning naming the new one.
- ``main`` adds commands in pipeline order (:data:`PIPELINE_ORDER`), which ``--help`` lists them in.

Nothing here imports more than the standard library: ``--help`` and argument errors come before any
heavy import.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from .logs import add_verbosity

#: Sub-commands in the order a run uses them (``sae-store --help`` lists them so).
PIPELINE_ORDER = (
    "demo", "make-demo-data", "make-tiny-model", "prepare", "init", "extract", "append", "unlock",
    "migrate", "status", "du", "verify", "train", "encode", "export-saes", "evaluate", "analyze", "caption",
    "intervene", "intervene-summary", "explain", "report", "explore", "pipeline", "jobs",
)  # fmt: skip
#: Commands that change a store: refused at once while an append runs or was left unfinished.
WRITING_COMMANDS = frozenset({"extract", "append", "encode", "analyze", "caption", "intervene"})
#: Commands that read a store's data: refused at once if an array of the store is missing.
READING_COMMANDS = frozenset({"train", "report", "intervene-summary"})
Handler = Callable[[argparse.Namespace], int]
#: Parser default listing (dest, flag) of options that are required but may be given by an old name.
_REQUIRED = "_required_options"


class UsageError(SystemExit):
    """A command line that does not parse (printed on stderr already); exit status 2."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(2)
        self.command, self.message = " ".join(prog.split()[1:]), message


class Parser(argparse.ArgumentParser):
    """argparse with the project's error convention (see the module's description)."""

    def error(self, message: str) -> NoReturn:
        what = "commands" if self._commands() else "options"
        message = f"{message} (`{self.prog} --help` lists the {what})"
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise UsageError(self.prog, message)

    def _commands(self) -> bool:
        return any(isinstance(a, argparse._SubParsersAction) for a in self._actions)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        assert parsed is not None
        if self._commands():
            return parsed, extras
        if extras:
            self.error(unrecognized(extras, [s for a in self._actions for s in a.option_strings]))
        required = self.get_default(_REQUIRED) or ()
        missing = [flag for dest, flag in required if getattr(parsed, dest) is None]
        if missing:
            self.error(f"the following arguments are required: {', '.join(missing)}")
        return parsed, extras


def unrecognized(extras: Sequence[str], flags: Sequence[str]) -> str:
    """The message for arguments no option takes, with the closest known flag of each unknown one."""
    hints = {}
    for word in extras:
        flag = word.split("=", 1)[0]
        close = difflib.get_close_matches(flag, flags, n=1, cutoff=0.7)
        if flag.startswith("--") and flag not in flags and close:
            hints[flag] = close[0]
    shown = [m if len(hints) == 1 else f"{m} (for {flag})" for flag, m in hints.items()]
    hint = f"; did you mean {', '.join(shown)}?" if hints else ""
    return f"unrecognized arguments: {' '.join(extras)}{hint}"


def add_command(
    subparsers: Any, name: str, func: Handler, *, help: str | None = None, json: bool = True
) -> argparse.ArgumentParser:
    """A sub-command with ``func`` as its handler, ``-v``/``-q`` accepted after it and ``--json``
    (``json=False`` for a command with no result to print, such as a server).

    Its help is the first sentence of ``func``'s docstring (or ``help``) and its description the rest of
    the docstring (or that sentence), so a command is described once, where it is implemented.
    """
    summary, _, rest = (inspect.getdoc(func) or "").partition("\n\n")
    sentence = help or " ".join(summary.split()).rstrip(".")
    if not sentence:
        raise TypeError(f"command {name!r}: its handler {func.__name__} has no docstring to describe it")
    p: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=sentence[:1].lower() + sentence[1:] if sentence[1:2].islower() else sentence,
        description=" ".join(rest.split()) or sentence[:1].upper() + sentence[1:] + ".",
    )
    add_verbosity(p, top=False)
    if json:
        p.add_argument(
            "--json", action="store_true", help="print the result as JSON (errors too), for scripts"
        )
    p.set_defaults(func=func, json=False, command_name=" ".join(p.prog.split()[1:]))
    return p


def add_group(subparsers: Any, name: str, help: str, *, description: str, dest: str) -> Any:
    """A command with sub-commands of its own (``analyze``, ``jobs``); returns their subparsers."""
    p = subparsers.add_parser(name, help=help, description=description)
    return p.add_subparsers(
        dest=dest, metavar="ACTION" if dest == "jobs_command" else "ANALYSIS", required=True
    )


def show(args: argparse.Namespace, result: Mapping[str, Any], lines: str | Sequence[str]) -> None:
    """Print a command's result: ``result`` as one JSON object with ``--json``, else ``lines``."""
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(lines if isinstance(lines, str) else "\n".join(lines))


def say(args: argparse.Namespace, line: str) -> None:
    """A line about the work in progress: on stdout, or on stderr with ``--json`` (stdout is the JSON)."""
    print(line, file=sys.stderr if args.json else sys.stdout, flush=True)


def natural(text: str) -> int:
    """An argparse ``type``: a whole number >= 0."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return int(text)


def port(text: str) -> int:
    """An argparse ``type``: a TCP port, 0-65535 (0: any free port)."""
    if not text.strip().isdigit() or not 0 <= int(text) < 65536:
        raise argparse.ArgumentTypeError(f"must be a port number in 0..65535 (0: any free one), got {text!r}")
    return int(text)


def require(p: argparse.ArgumentParser, dest: str, flag: str) -> None:
    """Refuse a command line without ``flag`` (whose old name, if any, also sets ``dest``)."""
    p.set_defaults(**{_REQUIRED: [*(p.get_default(_REQUIRED) or ()), (dest, flag)]})


def add_old_name(p: argparse.ArgumentParser, old: str, new: str, **kw: Any) -> None:
    """``old`` sets what ``new`` sets, for one release, hidden from ``--help`` and with a warning."""
    (action,) = [a for a in p._actions if new in a.option_strings]
    kw.setdefault("nargs", 0 if action.nargs == 0 else None)
    if action.type is not None:
        kw.setdefault("type", action.type)
    p.add_argument(old, action=_OldName, dest=action.dest, new=new, help=argparse.SUPPRESS, **kw)


class _OldName(argparse.Action):
    def __init__(self, *args: Any, new: str, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.new = new

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, flag: Any = None
    ) -> None:
        print(f"{parser.prog}: {flag} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, True if self.nargs == 0 else values)
