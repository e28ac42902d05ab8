"""Validation shared by the typed configs of every capability (each raises :class:`ConfigError`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from sae_store.errors import ConfigError


def check_choice(name: str, value: object, allowed: tuple[object, ...]) -> None:
    """Refuse ``value`` for field ``name`` unless it is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {list(allowed)}, got {value!r}")


def check_known_keys(data: Mapping[str, Any], cls: Any, what: str) -> None:
    """Refuse keys of ``data`` that are not fields of dataclass ``cls``, naming the allowed ones."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} keys {unknown}; allowed: {sorted(known)}")
