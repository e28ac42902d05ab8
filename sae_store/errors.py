"""Exceptions raised for bad input.

Every error a user can cause derives from :class:`SaeStoreError` (a ``ValueError``), so the CLI can
turn it into one clear line and a non-zero exit, and library users can catch one type.
"""

from __future__ import annotations


class SaeStoreError(ValueError):
    """Bad input or a state the toolkit refuses to work on; the message says how to fix it."""


class StoreNotFoundError(SaeStoreError, FileNotFoundError):
    """The path does not exist or is not an activation store."""


class SchemaVersionError(SaeStoreError):
    """The store was written by a schema version this code does not understand."""


class AlignmentError(SaeStoreError):
    """A region write does not cover whole shard blocks."""


class StoreLockedError(SaeStoreError):
    """Another process holds the store's lock (or left a stale one)."""


class IncompleteError(SaeStoreError):
    """A step needs data that earlier steps have not finished writing."""


class StaleResultError(IncompleteError):
    """A stored result was computed from features that have been encoded again with other SAEs."""


class ModelLoadError(SaeStoreError):
    """A model folder is missing files or holds an unsupported architecture."""


class DataError(SaeStoreError):
    """Input data (captions, images, samples table) is unusable."""


class ConfigError(SaeStoreError):
    """A configuration value is out of range, of the wrong type, or unknown."""


def shown_value(value: object, limit: int = 40) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters (a 400-digit number stays readable)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-1]} ({len(text)} characters)"
