"""The command line's building blocks: options generated from config declarations, one helper per
shared concept, and the parser conventions every command follows.

- :func:`add_settings` adds one option per declared field of config classes
  (:mod:`sae_store.configbase`): the flag, metavar, help and default come from the declaration, and
  :func:`build` turns the parsed values back into the config, so an option cannot drift from its
  setting. Values are read and checked when the config is built, so a bad value is one line naming
  the option, the value and what is allowed.
- Options that are not settings have one helper each, used by every command that takes them: the
  store argument, ``--saes``, ``--layers``, ``--languages``, ``--overwrite``, ``--task-index`` /
  ``--task-count``, ``--json``, ``--no-progress`` and ``-v``/``-q`` (before or after the command).
- :func:`add_command` gives every command a description and its help, and ``main`` adds commands in
  pipeline order (:data:`PIPELINE_ORDER`), which is the order ``--help`` lists them in.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sae_store.arraytask import slurm_task
from sae_store.configbase import SettingError, SettingField, declared
from sae_store.errors import ConfigError
from sae_store.progress import on_terminal
from sae_store.selection import parse_layer_spec
from sae_store.settings_text import from_text
from sae_store.units import parse_count, parse_size

_C = TypeVar("_C")

#: Sub-commands in the order a run uses them (``sae-store --help`` lists them so).
PIPELINE_ORDER = (
    "demo", "make-demo-data", "make-tiny-model", "prepare", "init", "extract", "append", "unlock",
    "migrate", "status", "du", "verify", "train", "encode", "export-saes", "evaluate", "analyze", "caption",
    "intervene", "intervene-summary", "report", "explore", "pipeline", "jobs",
)  # fmt: skip
#: Commands that change a store: refused at once while an append runs or was left unfinished.
WRITING_COMMANDS = frozenset({"extract", "append", "encode", "analyze", "caption", "intervene"})
#: Commands that read a store's data: refused at once if an array of the store is missing.
READING_COMMANDS = frozenset({"train", "report", "intervene-summary"})
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"  # with the date: jobs run for days
Handler = Callable[[argparse.Namespace], int]
#: Parser default recording the options :func:`add_settings` added (so a shared flag is added once).
_ADDED = "_settings_added"


def add_command(
    subparsers: Any, name: str, func: Handler, *, help: str | None = None
) -> argparse.ArgumentParser:
    """A sub-command with ``func`` as its handler and ``-v``/``-q`` accepted after it.

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
    p.set_defaults(func=func)
    return p


def add_group(subparsers: Any, name: str, help: str, *, description: str, dest: str) -> Any:
    """A command with sub-commands of its own (``analyze``, ``jobs``); returns their subparsers."""
    p = subparsers.add_parser(name, help=help, description=description)
    return p.add_subparsers(
        dest=dest, metavar="ACTION" if dest == "jobs_command" else "ANALYSIS", required=True
    )


# ---------------------------------------------------------------- options from declarations


def _help(f: SettingField) -> str:
    text = f.setting.help
    choices = f.choices()
    if choices is not None and callable(f.setting.choices):  # a registry: list what is registered now
        text += f": {', '.join(map(str, choices))}"
    return f"{text} (default: {f.shown_default()})".replace("%", "%%")


def _metavar(f: SettingField) -> str:
    if f.setting.metavar:
        return f.setting.metavar
    choices = f.choices()
    if choices is not None:
        return "|".join(map(str, choices))
    if f.type in (int, int | None):
        return "N"
    return "X" if f.type in (float, float | None) else "TEXT"


def add_settings(
    p: argparse.ArgumentParser, *classes: type, exclude: Sequence[str] = (), title: str | None = None
) -> None:
    """One option per declared field of ``classes``; fields sharing a flag (here or in an earlier call on
    the same parser, such as ``--seed``) share the option.

    Parameters
    ----------
    exclude
        Fields (by name) that the command takes otherwise or not at all.
    title
        Put the options under this heading in ``--help``.
    """
    target = p.add_argument_group(title) if title else p
    seen: dict[str, SettingField] = p.get_default(_ADDED) or {}
    p.set_defaults(**{_ADDED: seen})
    for cls in classes:
        for f in declared(cls):
            if not f.setting.expose or f.name in exclude:
                continue
            if f.key in seen:
                if not f.same_as(seen[f.key]):
                    raise ConfigError(f"--{f.flag} is declared differently in {cls.__name__} and elsewhere")
                continue
            seen[f.key] = f
            kw: dict[str, Any] = {"dest": f.key, "help": _help(f)}
            if f.type is bool:
                kw.update(action=argparse.BooleanOptionalAction, default=None)
            else:
                kw.update(metavar=_metavar(f), default=None, required=f.required)
                if f.setting.repeat:
                    kw.update(action="append")
            target.add_argument(f"--{f.flag}", **kw)


def build(args: argparse.Namespace, cls: type[_C], **fixed: Any) -> _C:
    """``cls`` from the options :func:`add_settings` added (unset ones keep their defaults) and ``fixed``."""
    values: dict[str, Any] = {}
    by_name = {f.name: f for f in declared(cls)}
    for f in by_name.values():
        given = getattr(args, f.key, None)
        if given is None or f.name in fixed:
            continue
        try:
            values[f.name] = from_text(f, given)
        except SettingError as e:
            raise e.renamed(f"--{f.flag}") from None
    try:
        return cls(**values, **fixed)
    except SettingError as e:
        if e.field in by_name and e.field not in fixed:
            raise e.renamed(f"--{by_name[e.field].flag}") from None
        raise


# ---------------------------------------------------------------- shared concepts


def add_store(p: argparse.ArgumentParser, help: str = "path of the activation store") -> None:
    p.add_argument("store", help=help)


def add_model(p: argparse.ArgumentParser) -> None:
    """``--model DIR`` of the commands that run the model (default: the folder the store records)."""
    p.add_argument("--model", metavar="DIR", help="model folder (default: the one recorded in the store)")


def add_images(
    p: argparse.ArgumentParser, help: str = "images folder (default: the one recorded in the store)"
) -> None:
    p.add_argument("--images", metavar="DIR", help=help)


def add_saes(p: argparse.ArgumentParser, *, required: bool, what: str = "", repeat: bool = False) -> None:
    """``--saes DIR``: a folder of per-layer SAEs in any layout ``find_saes`` reads, or a ``{L}`` pattern;
    ``repeat``: given once per SAE set, ``NAME=DIR`` naming one."""
    p.add_argument(
        "--saes",
        required=required,
        metavar="[NAME=]DIR" if repeat else "DIR",
        action="append" if repeat else "store",
        help="folder of per-layer SAEs (layer_<L>/ from `train`, SAELens, sparsify layers.<L>/, Gemma Scope) "
        "or a pattern with {L}, e.g. 'gemma-scope-2/resid_post/layer_{L}_width_16k_l0_medium'"
        + ("; once per SAE set, NAME=DIR to name it (default: the folder's name)" if repeat else "")
        + what,
    )


def add_layers(p: argparse.ArgumentParser, what: str, default: str) -> None:
    """``--layers SPEC`` outside a config (read with :func:`layers_from_args`)."""
    p.add_argument(
        "--layers",
        metavar="SPEC",
        help=f"{what}: indices and ranges such as 0-33, 10,22 or 0-3,10 (default: {default})",
    )


def layers_from_args(args: argparse.Namespace) -> tuple[int, ...] | None:
    return None if args.layers is None else parse_layer_spec(args.layers, name="--layers")


def add_languages(p: argparse.ArgumentParser, what: str, default: str) -> None:
    p.add_argument("--languages", metavar="LANGS", help=f"{what}, e.g. en,ar (default: {default})")


def add_overwrite(p: argparse.ArgumentParser, what: str, *, old: Sequence[str] = ()) -> None:
    """``--overwrite``; ``old`` flags still work for one release, hidden from ``--help``."""
    p.add_argument("--overwrite", action="store_true", help=what)
    for flag in old:
        p.add_argument(flag, action=_Deprecated, dest="overwrite", nargs=0, help=argparse.SUPPRESS)


class _Deprecated(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, *_: Any) -> None:
        print(f"{parser.prog}: {self.option_strings[0]} is deprecated; use --overwrite", file=sys.stderr)
        setattr(namespace, self.dest, True)


def add_task(p: argparse.ArgumentParser) -> None:
    """``--task-index``/``--task-count``: this array task's share of the shard blocks."""
    p.add_argument(
        "--task-index", type=int, metavar="I", help="this task (default: $SLURM_ARRAY_TASK_ID, or 0)"
    )
    p.add_argument(
        "--task-count", type=int, metavar="N", help="tasks (default: $SLURM_ARRAY_TASK_COUNT, or 1)"
    )


def task_from_args(args: argparse.Namespace) -> tuple[int, int]:
    index, count = slurm_task()
    return (
        args.task_index if args.task_index is not None else index,
        args.task_count if args.task_count is not None else count,
    )


def add_layer(p: argparse.ArgumentParser) -> None:
    """``--layer L`` of the commands that run one layer per array task."""
    p.add_argument("--layer", type=int, metavar="L", help="decoder layer (default: $SLURM_ARRAY_TASK_ID)")


def add_quotas(p: argparse.ArgumentParser) -> None:
    """``--quota`` and ``--inode-quota`` (``du`` and ``report``)."""
    p.add_argument(
        "--quota", metavar="SIZE", help="byte quota, e.g. 500G or 2TiB; exit 1 if the projection exceeds it"
    )
    p.add_argument(
        "--inode-quota", metavar="N", help="file-count quota, e.g. 1e6; exit 1 if the projection exceeds it"
    )


def quotas_from_args(args: argparse.Namespace) -> tuple[int | None, int | None]:
    return (
        parse_size(args.quota) if args.quota is not None else None,
        parse_count(args.inode_quota) if args.inode_quota is not None else None,
    )


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print only JSON (errors too), for scripts")


def add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar on a terminal (log lines only)"
    )


def add_verbosity(p: argparse.ArgumentParser, *, top: bool) -> None:
    """``-v``/``-q``; below the top level they default to SUPPRESS so they don't undo the top's."""
    extra: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "-v", "--verbose", action="store_true", help="also log sae-store's debug messages", **extra
    )
    g.add_argument("-q", "--quiet", action="store_true", help="log only warnings and errors", **extra)


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
