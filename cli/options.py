"""The command line's options: generated from config declarations, and one helper per shared concept.

- :func:`add_settings` adds one option per declared field of config classes
  (:mod:`sae_store.configbase`): the flag, metavar, help and default come from the declaration, and
  :func:`build` turns the parsed values back into the config, so an option cannot drift from its
  setting. Values are read and checked when the config is built, so a bad value is one line naming
  the option, the value and what is allowed.
- Options that are not settings have one helper each, used by every command that takes them: the
  store argument, ``--saes``, ``--results``, ``--layers``, ``--languages``, ``--overwrite``,
  ``--task-index`` / ``--task-count`` and ``--no-progress``. Every option's help ends with its
  default, ``(default: ...)``, or ``(required)``; metavars name the kind of value (``N`` a count,
  ``X`` a number, ``DIR``, ``FILE``, ``SIZE``, ``SPEC`` ...), checked by tests/test_cli_consistency.py.

The parser conventions (errors, ``--json``, old names) are in :mod:`.parser`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

from sae_store.arraytask import slurm_task
from sae_store.configbase import RuleError, SettingError, SettingField, declared, strip_optional
from sae_store.errors import ConfigError
from sae_store.selection import parse_layer_spec
from sae_store.settings_text import from_text
from sae_store.units import parse_count, parse_size

from .parser import add_old_name, require

_C = TypeVar("_C")

#: Parser default recording the options :func:`add_settings` added (so a shared flag is added once).
_ADDED = "_settings_added"


# ---------------------------------------------------------------- options from declarations


def _help(f: SettingField) -> str:
    text = f.setting.help
    choices = f.choices()
    if choices is not None and callable(f.setting.choices):  # a registry: list what is registered now
        text += f": {', '.join(map(str, choices))}"
    tail = "required" if f.required else f"default: {f.shown_default()}"
    return f"{text} ({tail})".replace("%", "%%")


def _metavar(f: SettingField) -> str:
    """The declared metavar, else one from the type: ``a|b`` choices, ``N`` a count, ``X`` a number,
    ``N,N,...`` and ``X,X,...`` lists of them, ``TEXT``."""
    if f.setting.metavar:
        return f.setting.metavar
    choices = f.choices()
    if choices is not None:
        return "|".join(map(str, choices))
    tp = strip_optional(f.type)
    if get_origin(tp) is tuple:
        item = {int: "N", float: "X"}.get(get_args(tp)[0], "TEXT")
        return f"{item},{item},..."
    return {int: "N", float: "X"}.get(tp, "TEXT")


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
        if given is None or f.name in fixed or not f.setting.expose:  # not an option (set by the program)
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
    except RuleError as e:
        raise ConfigError(e.named(lambda f: f"--{f.flag}")) from None


# ---------------------------------------------------------------- shared concepts


def add_store(p: argparse.ArgumentParser, help: str = "path of the activation store") -> None:
    p.add_argument("store", metavar="STORE", help=help)


def add_model(p: argparse.ArgumentParser, *, required: bool = False, help: str = "model folder") -> None:
    """``--model DIR``; for the commands that run the model it defaults to the folder the store records."""
    tail = "(required)" if required else "(default: the one recorded in the store)"
    p.add_argument("--model", required=required, metavar="DIR", help=f"{help} {tail}")


def add_images(
    p: argparse.ArgumentParser, help: str = "images folder", default: str = "the one recorded in the store"
) -> None:
    p.add_argument("--images", metavar="DIR", help=f"{help} (default: {default})")


def add_saes(
    p: argparse.ArgumentParser,
    *,
    required: bool,
    help: str = "folder of per-layer SAEs (layer_<L>/ from `train`, SAELens, sparsify layers.<L>/, Gemma "
    "Scope) or a pattern with {L}, e.g. 'gemma-scope-2/resid_post/layer_{L}_width_16k_l0_medium'",
    default: str = "saes/ beside the store",
    old: str = "",
    repeat: bool = False,
) -> None:
    """``--saes DIR``: the folder of per-layer SAEs (read, or written by ``train``); ``old`` is a former
    name of the option that still works for one release; ``repeat``: given once per SAE set, ``NAME=DIR``
    naming one."""
    once_per_set = "; once per SAE set, NAME=DIR to name it (default name: the folder's)" if repeat else ""
    p.add_argument(
        "--saes",
        metavar="[NAME=]DIR" if repeat else "DIR",
        action="append" if repeat else "store",
        help=f"{help}{once_per_set} ({'required' if required else f'default: {default}'})",
    )
    if old:
        add_old_name(p, old, "--saes")
    if required:
        require(p, "saes", "--saes")


def add_results(p: argparse.ArgumentParser, help: str, *, old: str = "") -> None:
    """``--results DIR``: the folder of analysis and intervention JSON results (read or written)."""
    p.add_argument("--results", type=Path, metavar="DIR", help=f"{help} (default: results/ beside the store)")
    if old:
        add_old_name(p, old, "--results")


def results_from_args(args: argparse.Namespace) -> Path:
    return args.results or Path(args.store).resolve().parent / "results"


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


def languages_from_args(args: argparse.Namespace) -> list[str] | None:
    return None if args.languages is None else parse_words(args.languages, "--languages")


def parse_words(text: str, flag: str) -> list[str]:
    """``en,ar`` -> ``["en", "ar"]``; an empty list is refused, naming ``flag``."""
    words = [x.strip() for x in text.split(",") if x.strip()]
    if not words:
        raise ConfigError(f"{flag} needs at least one comma-separated name, got {text!r}")
    return words


def add_overwrite(p: argparse.ArgumentParser, what: str, *, old: Sequence[str] = ()) -> None:
    """``--overwrite``; ``old`` flags still work for one release, hidden from ``--help``."""
    p.add_argument("--overwrite", action="store_true", help=what)
    for flag in old:
        add_old_name(p, flag, "--overwrite")


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
        "--quota",
        metavar="SIZE",
        help="byte quota, e.g. 500G or 2TiB; exit 1 if the projection exceeds it (default: no quota)",
    )
    p.add_argument(
        "--inode-quota",
        metavar="N",
        help="file-count quota, e.g. 1e6; exit 1 if the projection exceeds it (default: no quota)",
    )


def quotas_from_args(args: argparse.Namespace) -> tuple[int | None, int | None]:
    return (
        parse_size(args.quota) if args.quota is not None else None,
        parse_count(args.inode_quota) if args.inode_quota is not None else None,
    )


def add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar on a terminal (log lines only)"
    )
