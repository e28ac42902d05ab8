"""Settings declared once: each config field carries its help, default, bounds and choices.

A configuration is a frozen dataclass deriving from :class:`Settings` whose fields are declared with
:func:`setting`. Everything else follows from that one declaration:

- building an instance checks every field's type, bounds and choices and names the field, the value
  and what is allowed (:class:`SettingError`); a class adds its cross-field rules in ``check``;
- :meth:`Settings.from_dict` (JSON, YAML) refuses unknown keys, naming the closest known one;
- the command line gets one option per field with the declared flag, metavar, help and default
  (``sae_store_cli.options.add_settings``), and values given as text are read by
  :func:`~sae_store.settings_text.from_text`;
- a pipeline job's options are rendered back from values by :func:`~sae_store.settings_text.to_argv`,
  so a setting cannot fall through the hop from the pipeline YAML to the command line.

A field's *flag* (``--arch``) is also its YAML key (``arch``); JSON round trips use field names.
This module imports nothing heavy: command-line parsers are built from it in milliseconds.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from sae_store.errors import ConfigError, shown_value
from sae_store.settings_phrase import literal_type, phrase, strip_optional

_S = TypeVar("_S", bound="Settings")
_KEY = "setting"


@dataclass(frozen=True)
class Setting:
    """How one configuration field is named, explained, bounded and read from text."""

    help: str
    """One line for ``--help`` and the example pipeline config."""
    flag: str = ""
    """Command-line option without ``--`` and, with ``_`` for ``-``, the YAML key (default: the field
    name)."""
    metavar: str | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | Callable[[], Sequence[Any]] | None = None
    """Allowed values, or a function returning them (a registry); ``Literal`` types need none."""
    aliases: Mapping[str, Any] | None = None
    """Other spellings read as an allowed value (``bfloat16`` -> ``bf16``, ``neutralize`` -> ``neutralise``);
    ``--help`` and rendered jobs show only the allowed ones."""
    parse: Callable[[str], Any] | None = None
    """Text (a command-line value, a YAML string) -> value, raising ConfigError; e.g. a size."""
    show: Callable[[Any], str] | None = None
    """Value -> text for help, rendered jobs and the example config (inverse of ``parse``)."""
    what: str = ""
    """What is allowed, for messages, when the bounds do not say it (``a size such as 2GiB``)."""
    default_text: str = ""
    """How the default is shown when its value does not say it (None: ``every layer of the store``;
    a computed default: ``the cores, at most 8``)."""
    repeat: bool = False
    """A tuple given by repeating the option (``--slurm-directive A --slurm-directive B``)."""
    expose: bool = True
    """False for fields the program sets (an SAE's input width, an array task's index)."""


def setting(default: Any = MISSING, *, help: str, default_factory: Any = MISSING, **declaration: Any) -> Any:
    """A dataclass field declared with its :class:`Setting` (``help`` and the other keywords)."""
    meta = {_KEY: Setting(help=help, **declaration)}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class SettingField:
    """One declared field of a :class:`Settings` class."""

    name: str
    type: Any
    setting: Setting
    owner: type

    @property
    def flag(self) -> str:
        return self.setting.flag or self.name.replace("_", "-")

    @property
    def key(self) -> str:
        """The YAML key and the command-line namespace attribute."""
        return self.flag.replace("-", "_")

    @property
    def default(self) -> Any:
        f = next(f for f in fields(self.owner) if f.name == self.name)
        if f.default_factory is not MISSING:
            return f.default_factory()
        return None if f.default is MISSING else f.default

    @property
    def required(self) -> bool:
        f = next(f for f in fields(self.owner) if f.name == self.name)
        return f.default is MISSING and f.default_factory is MISSING

    def choices(self) -> tuple[Any, ...] | None:
        c = self.setting.choices
        if callable(c):
            return tuple(c())
        if c is not None:
            return tuple(c)
        literal = literal_type(self.type)
        return tuple(get_args(literal)) if literal is not None else None

    def same_as(self, other: SettingField) -> bool:
        """Whether two fields declare the same option (one flag may set several configs' fields)."""
        return (self.setting, strip_optional(self.type), self.default) == (
            other.setting,
            strip_optional(other.type),
            other.default,
        )

    def show(self, value: Any) -> str:
        """``value`` as text, as the command line reads it back."""
        if self.setting.show is not None and value is not None:
            return self.setting.show(value)
        if isinstance(value, tuple | list):
            return ",".join(str(v) for v in value)
        return str(value)

    def shown_default(self) -> str:
        if self.setting.default_text:
            return self.setting.default_text
        default = self.default
        if default is None or default == ():
            return "none"
        if isinstance(default, bool):
            return "on" if default else "off"
        return self.show(default)

    def phrase(self) -> str:
        """What the field accepts, for messages (``a positive integer``, ``in [0, 1)``, ...)."""
        if self.setting.what:
            return self.setting.what
        choices = self.choices()
        if choices is not None:
            return f"one of {list(choices)}"
        return phrase(self.type, self.setting)


class SettingError(ConfigError):
    """A field's value is not allowed; ``name`` is the field, ``detail`` what is wrong with it.

    The caller that knows how the user wrote the value renames it (``--k``, ``sae.k``).
    """

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"{name} {detail}")
        self.name, self.detail = name, detail

    @property
    def field(self) -> str:
        """The field's name without the part the value sits in (``mail_types`` of ``mail_types[1]``)."""
        return re.split(r"[\[.]", self.name, maxsplit=1)[0]

    def renamed(self, name: str) -> SettingError:
        """The same error with the field called ``name`` (the part, ``[1]``, is kept)."""
        return SettingError(name + self.name[len(self.field) :], self.detail)


class RuleError(ConfigError):
    """A rule between fields is broken. The message names fields as ``{field}``, and whoever knows how
    the user wrote them renders it (:meth:`named`): ``--lr-warmup-steps`` on the command line,
    ``sae.lr_warmup_steps`` in a YAML section, the field's name otherwise."""

    def __init__(self, template: str, owner: type) -> None:
        self.template, self.owner = template, owner
        super().__init__(self.named(lambda f: f.name))

    def named(self, name: Callable[[SettingField], str]) -> str:
        names = {f.name: name(f) for f in declared(self.owner)}
        return re.sub(r"\{(\w+)\}", lambda m: names.get(m.group(1), m.group(0)), self.template)


def value_error(f: SettingField, value: Any, tp: Any = None, name: str = "") -> SettingError:
    what = f.phrase() if tp is None else phrase(tp, f.setting)
    return SettingError(name or f.name, f"must be {what}, got {shown_value(value)}")


_DECLARED: dict[type, tuple[SettingField, ...]] = {}


def declared(cls: type) -> tuple[SettingField, ...]:
    """The declared fields of a :class:`Settings` class, in order."""
    if cls not in _DECLARED:
        hints = get_type_hints(cls)
        _DECLARED[cls] = tuple(
            SettingField(f.name, hints[f.name], f.metadata[_KEY], cls)
            for f in fields(cls)
            if _KEY in f.metadata
        )
    return _DECLARED[cls]


def _coerce(f: SettingField, tp: Any, value: Any, name: str = "") -> Any:
    """``value`` checked against type ``tp`` (lists become tuples, ints floats); SettingError if not.

    ``name`` is where the value sits when it is part of the field (``mail_types[1]``).
    """
    origin, args = get_origin(tp), get_args(tp)
    top = not name
    name = name or f.name

    def fail() -> SettingError:
        return value_error(f, value) if top else value_error(f, value, tp, name)

    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _coerce(f, strip_optional(tp), value, "" if top else name)
    if top and value is not None and f.setting.parse is not None:
        value = f.setting.parse(value)  # text, or a value to normalise (layers are sorted)
    if isinstance(value, str) and f.setting.aliases:
        value = f.setting.aliases.get(value, value)
    if origin is Literal or tp is str:
        if not (value in args if origin is Literal else isinstance(value, str)):
            raise fail()
        if any(ord(c) < 32 or c == "\x7f" for c in value):  # values reach shell and #SBATCH lines
            raise SettingError(name, f"must be a single line without control characters, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise fail()
        items = tuple(value)
        kinds = [args[0]] * len(items) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(items) != len(kinds):
            raise fail()
        return tuple(
            _coerce(f, kind, v, f"{name}[{i}]") for i, (kind, v) in enumerate(zip(kinds, items, strict=True))
        )
    if origin is dict:
        if not isinstance(value, Mapping):
            raise fail()
        return {str(k): _coerce(f, args[1], v, f"{name}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, Settings):
        return value if isinstance(value, tp) else tp.from_dict(value, where=name, keys="flag")
    if tp is bool:
        if not isinstance(value, bool):
            raise fail()
        return value
    if tp in (int, float):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or (tp is int and not isinstance(value, int)) or not math.isfinite(value):
            raise fail()
        value = float(value) if tp is float else value
        s = f.setting
        if (
            (s.ge is not None and value < s.ge)
            or (s.gt is not None and value <= s.gt)
            or (s.le is not None and value > s.le)
            or (s.lt is not None and value >= s.lt)
        ):
            raise fail()
        return value
    if tp is Any or isinstance(value, tp):
        return value
    raise fail()


def validate(obj: Settings) -> None:
    """Check (and normalise: lists to tuples, ints to floats) every declared field of ``obj``."""
    for f in declared(type(obj)):
        value = getattr(obj, f.name)
        checked = _coerce(f, f.type, value)
        choices = f.setting.choices
        if choices is not None and checked is not None:
            allowed = f.choices() or ()
            items = checked if isinstance(checked, tuple) and f.setting.repeat else (checked,)
            if any(v not in allowed for v in items):
                raise value_error(f, value)
        if checked is not value:
            object.__setattr__(obj, f.name, checked)


class Settings:
    """Base of every configuration dataclass: declared fields are checked when an instance is built."""

    def __post_init__(self) -> None:
        validate(self)
        self.check()

    def check(self) -> None:
        """Rules between fields (raise :meth:`rule_error`); each field alone is checked from its
        declaration."""

    def rule_error(self, message: str) -> RuleError:
        """The error of a broken rule between fields, naming each field as ``{field_name}``."""
        return RuleError(message, type(self))

    def to_dict(self) -> dict[str, Any]:
        """Values by field name (JSON-ready); :meth:`from_dict` reads it back."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(
        cls: type[_S], data: Any, *, where: str = "", keys: Literal["name", "flag"] = "name", what: str = ""
    ) -> _S:
        """Build from plain data, refusing unknown keys (named with the closest known one).

        ``keys`` says whether ``data`` is keyed by field names (JSON written by :meth:`to_dict`) or by
        YAML keys (the flags); ``where`` is the section's dotted name for messages (``slurm``), and
        nested configs are built with theirs (``slurm.steps.extract``); ``what`` names it otherwise.
        """
        what = what or (f"section {where!r}" if where else cls.__name__)
        if not isinstance(data, Mapping):
            raise ConfigError(f"{what} must be a mapping of keys to values, got {shown_value(data)}")
        by_key = {(f.key if keys == "flag" else f.name): f for f in declared(cls)}
        known = list(by_key) + [f.name for f in fields(cls) if keys == "name" and f.name not in by_key]  # type: ignore[arg-type]
        unknown_keys(data, known, what)
        values = {}
        for k, v in data.items():
            f = by_key.get(k)
            path = f"{where}.{k}" if where else str(k)
            values[f.name if f is not None else k] = _nested(f.type, v, path, keys) if f is not None else v
        prefix = f"{where}." if where else ""
        try:
            return cls(**values)
        except SettingError as e:
            f = next((f for f in declared(cls) if f.name == e.field), None)
            shown = (f.key if keys == "flag" else f.name) if f is not None else e.field
            raise e.renamed(prefix + shown) from None
        except RuleError as e:
            raise ConfigError(e.named(lambda f: prefix + (f.key if keys == "flag" else f.name))) from None
        except TypeError as e:  # a required field without a value
            raise ConfigError(f"{what}: {e}") from e


def _nested(tp: Any, value: Any, where: str, keys: Literal["name", "flag"]) -> Any:
    """``value`` of a field typed ``tp``, with nested configs built (and named in messages) by path."""
    tp = strip_optional(tp)
    if isinstance(tp, type) and issubclass(tp, Settings) and isinstance(value, Mapping):
        return tp.from_dict(value, where=where, keys=keys)
    args = get_args(tp)
    inner = args[1] if get_origin(tp) is dict else None
    if isinstance(inner, type) and issubclass(inner, Settings) and isinstance(value, Mapping):
        return {str(k): inner.from_dict(v, where=f"{where}.{k}", keys=keys) for k, v in value.items()}
    return value


def unknown_keys(data: Mapping[Any, Any], known: Sequence[str], what: str) -> None:
    """Refuse keys of ``data`` not in ``known``, naming the closest known key of each."""
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        hints = [m for k in unknown for m in difflib.get_close_matches(k, known, n=1)]
        hint = f" (did you mean {', '.join(repr(h) for h in hints)}?)" if hints else ""
        raise ConfigError(f"unknown key(s) {unknown} in {what}{hint}; allowed: {list(known)}")


def seed_setting(help: str) -> Any:
    """The one declaration of a random seed (``--seed S``)."""
    return setting(0, help=help, metavar="S", ge=0)
