"""Sections of the pipeline YAML that hold settings of the commands (``sae:``, ``analysis:``, ...).

A section binds config classes: its keys are their fields' YAML keys (the flags, ``arch`` for
``--arch``), checked by the fields' own declarations when the config is loaded, and a key left out
keeps the command's default. A pipeline step renders its command's options from the section with
:meth:`Section.argv`, from the same declarations the command line is built from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sae_store.configbase import RuleError, SettingError, SettingField, declared, unknown_keys
from sae_store.errors import ConfigError, shown_value
from sae_store.settings_text import from_text, to_argv


class Binding(NamedTuple):
    """A config class whose fields (but ``exclude``) are keys of a section."""

    cls: type
    exclude: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Section:
    """The values a YAML section sets, by key; attribute access falls back to the declared default."""

    name: str
    bindings: tuple[Binding, ...] = field(repr=False, compare=False)
    values: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_") or key in ("name", "bindings", "values"):
            raise AttributeError(key)
        if key in self.values:
            return self.values[key]
        f = section_fields(self.bindings).get(key)
        if f is None:
            raise AttributeError(f"section {self.name!r} has no key {key!r}")
        return f.default

    def argv(self, *classes: type) -> list[str]:
        """Options of a command taking ``classes`` that set this section's values (unset: left out)."""
        return to_argv(self.values, classes)

    def build(self, cls: type, **fixed: Any) -> Any:
        """``cls`` with this section's values for its fields (and ``fixed``)."""
        kwargs = {f.name: self.values[f.key] for f in declared(cls) if f.key in self.values}
        return cls(**{**kwargs, **fixed})

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.values.items()}


def section_fields(bindings: Sequence[Binding]) -> dict[str, SettingField]:
    """Every key of a section with its field; a key bound twice must be declared the same way."""
    out: dict[str, SettingField] = {}
    for cls, exclude in bindings:
        for f in declared(cls):
            if not f.setting.expose or f.name in exclude:
                continue
            if f.key in out and not out[f.key].same_as(f):
                raise ConfigError(
                    f"key {f.key!r} is declared differently in {out[f.key].owner.__name__} and {cls.__name__}"
                )
            out.setdefault(f.key, f)
    return out


def parse_section(name: str, data: Any, bindings: Sequence[Binding]) -> Section:
    """A section from YAML data: unknown keys refused with the closest known one, every value checked
    by its declaration and by the rules of the classes it belongs to."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"section {name!r} must be a mapping of keys to values, got {shown_value(data)}")
    fields_by_key = section_fields(bindings)
    unknown_keys(data, list(fields_by_key), f"section {name!r}")
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if raw is None:
            continue
        try:
            values[key] = from_text(fields_by_key[key], raw)
        except SettingError as e:
            raise e.renamed(f"{name}.{key}") from None
    section = Section(name, tuple(bindings), values)
    for cls, exclude in bindings:  # checks each value, then the class's rules between fields
        given = {f.name: values[f.key] for f in declared(cls) if f.key in values and f.name not in exclude}
        placeholders = {f.name: _placeholder(f) for f in declared(cls) if f.required}
        try:
            checked = cls(**{**placeholders, **given})
        except SettingError as e:
            f = next((f for f in declared(cls) if f.name == e.field), None)
            raise e.renamed(f"{name}.{f.key if f is not None else e.field}") from None
        except RuleError as e:
            raise ConfigError(e.named(lambda f: f"{name}.{f.key}")) from None
        except ConfigError as e:
            raise ConfigError(f"section {name!r}: {e}") from None
        for f in declared(cls):  # keep the normalised value (a list read as a tuple, an int as a float)
            if f.name in given:
                values[f.key] = getattr(checked, f.name)
    return section


def _placeholder(f: SettingField) -> Any:
    # a required field that a section never sets (the layer of a training run): any valid value
    choices = f.choices()
    return choices[0] if choices else 0
