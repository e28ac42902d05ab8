"""The SAE sets ``evaluate`` compares: ``--saes [NAME=]DIR`` given once per set, found per layer.

A set is any folder or ``{L}`` pattern :func:`~sae_store.train.discovery.find_saes` reads (ours,
SAELens, sparsify, Gemma Scope). Its name (the results' group ``evaluation/<name>`` and file names)
is ``NAME`` or, without one, the folder's name (``saes``; for a pattern, the last folder before the
first ``{L}`` or wildcard).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sae_store.errors import SaeStoreError
from sae_store.train.discovery import find_saes
from sae_store.train.formats import weights_shape

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


@dataclass(frozen=True)
class SaeSet:
    """One set of per-layer SAEs."""

    name: str
    spec: str
    """The folder or pattern it was given as."""
    folders: dict[int, Path] = field(default_factory=dict)
    """Its SAE folder for each layer evaluated that it has."""


def set_name(spec: str) -> str:
    """The name of a set given without one: its folder's name (the part before ``{L}`` for a pattern)."""
    parts = Path(spec.rstrip("/")).parts
    cut = next((i for i, p in enumerate(parts) if any(c in p for c in "{*?")), len(parts))
    base = parts[cut - 1] if cut else "saes"
    return re.sub(r"[^A-Za-z0-9_.-]", "-", base).lstrip(".-_") or "saes"


def parse_sets(specs: Sequence[str]) -> dict[str, str]:
    """Names and specs of ``--saes`` values (``NAME=DIR`` or ``DIR``), in the order given.

    Raises
    ------
    SaeStoreError
        No set, a name that is not a plain word, or two sets with one name.
    """
    if not specs:
        raise SaeStoreError("no SAE set to evaluate; pass --saes DIR (once per set, NAME=DIR to name one)")
    out: dict[str, str] = {}
    for text in specs:
        name, sep, spec = text.partition("=")
        if not sep or "/" in name or not name:
            name, spec = set_name(text), text
        if not _NAME.match(name):
            raise SaeStoreError(
                f"SAE set name {name!r} (of --saes {text!r}) must start with a letter or digit and hold only "
                "letters, digits, '_', '.' and '-'; pass --saes NAME=DIR"
            )
        if name in out:
            raise SaeStoreError(
                f"two SAE sets are named {name!r} ({out[name]!r} and {spec!r}); name them apart with "
                f"--saes NAME=DIR"
            )
        out[name] = spec
    return out


def find_sets(specs: Sequence[str], layers: Sequence[int], hidden_size: int) -> list[SaeSet]:
    """Every set of ``specs`` with its SAE of each of ``layers`` it has (layers it lacks are logged).

    Raises
    ------
    SaeStoreError
        As :func:`parse_sets`; a set without an SAE in a known layout; an SAE whose ``d_in`` is not the
        store's hidden size; no set having any of ``layers``.
    """
    sets = []
    for name, spec in parse_sets(specs).items():
        found = find_saes(spec)
        folders = {layer: found[layer] for layer in layers if layer in found}
        missing = [layer for layer in layers if layer not in found]
        if missing:
            log.warning(
                "SAE set %r (%s) has no SAE for layer(s) %s; it is evaluated at %s",
                name, spec, missing, sorted(folders) or "no layer",
            )  # fmt: skip
        bad = {layer: weights_shape(folder)[0] for layer, folder in folders.items()}
        bad = {layer: d_in for layer, d_in in bad.items() if d_in != hidden_size}
        if bad:
            raise SaeStoreError(
                f"SAE set {name!r} ({spec}) reads vectors of d_in {bad} (by layer), but the store's residual "
                f"stream has width {hidden_size}; use SAEs trained on this model's activations"
            )
        sets.append(SaeSet(name, spec, folders))
    if not any(s.folders for s in sets):
        raise SaeStoreError(
            f"none of the SAE sets ({', '.join(s.spec for s in sets)}) has an SAE for layer(s) {list(layers)}"
        )
    return sets
