"""Which layers and languages a command works on: the one syntax of ``--layers`` and ``--languages``.

``--layers 0-33``, ``--layers 10,22`` and YAML ``layers: [0, 5]`` mean the same everywhere; a base
module, so the command line, the pipeline config and the library read them alike.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sae_store.configbase import SettingError, setting
from sae_store.errors import ConfigError, shown_value

_LAYER_ITEM = re.compile(r"^\s*(\d{1,6})\s*(?:-\s*(\d{1,6})\s*)?$")
_LAYER_SYNTAX = "indices and inclusive ranges separated by commas, e.g. '0-33' or '10,22' or '0-3,10'"


def parse_layer_spec(
    spec: str | int | list[int] | tuple[int, ...], *, name: str = "layers"
) -> tuple[int, ...]:
    """Layer indices from the one layer syntax of the CLI and YAML: ``"0-33"``, ``"10,22"``, ``[0, 5]``.

    Parameters
    ----------
    spec
        Comma-separated indices and inclusive ``A-B`` ranges, one index, or a list of indices.
    name
        How the value is named in messages (``--layers``, ``interventions.layers``).

    Returns
    -------
    tuple of int
        Sorted.

    Raises
    ------
    ConfigError
        For malformed items, descending ranges, negative indices or a layer given twice.
    """
    shown = shown_value(spec)
    if isinstance(spec, bool):
        raise SettingError(name, f"must be layer indices ({_LAYER_SYNTAX}), got {shown}")
    items = [str(x) for x in spec] if isinstance(spec, list | tuple) else str(spec).split(",")
    layers: list[int] = []
    for item in items:
        m = _LAYER_ITEM.match(item)
        if not m:
            raise SettingError(name, f"{shown}: cannot read {shown_value(item.strip())}; use {_LAYER_SYNTAX}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise SettingError(
                name, f"{shown}: range {item.strip()!r} runs backwards; write it as '{hi}-{lo}'"
            )
        layers.extend(range(lo, hi + 1))
    twice = sorted(layer for layer, n in Counter(layers).items() if n > 1)
    if twice:
        raise SettingError(name, f"{shown} names layer(s) {twice} more than once; give each layer once")
    return tuple(sorted(layers))


def parse_layers(text: str, n_layers: int, *, name: str = "layers") -> tuple[int, ...]:
    """Parse a layer selection such as ``"0-33"`` and check it against a model of ``n_layers`` layers;
    ``name`` is how messages call it (``--layers``).

    Raises
    ------
    ConfigError
        For malformed items, descending ranges, a layer given twice, or layers out of range.
    """
    layers = parse_layer_spec(text, name=name)
    bad = sorted(layer for layer in layers if layer >= n_layers)
    if bad:
        raise ConfigError(
            f"{name} {text!r}: {bad} out of range; the model has {n_layers} layers, 0..{n_layers - 1}"
        )
    return layers


def format_ranges(values: Sequence[int], sep: str = ",") -> str:
    """Sorted integers as runs: ``[0, 1, 2, 5, 7, 8]`` -> ``"0-2,5,7-8"`` (the layer syntax, read back
    by :func:`parse_layer_spec`, and sbatch's ``--array`` syntax)."""
    runs: list[list[int]] = []
    for v in sorted(set(values)):
        if runs and v == runs[-1][-1] + 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    return sep.join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def layer_list(layers: Sequence[int]) -> str:
    """Layers for people: ``"layer 5"``, ``"layers 0,2"``, ``"layers 0-33 (34)"`` (the count only where a
    range hides it)."""
    if len(layers) == 1:
        return f"layer {layers[0]}"
    text = format_ranges(layers)
    return f"layers {text} ({len(layers)})" if "-" in text else f"layers {text}"


def parse_language_list(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"en,ar"`` (or a list) -> ``("en", "ar")`` (order kept, repeats dropped); refused when empty."""
    if not isinstance(text, str):
        return tuple(dict.fromkeys(str(k) for k in text))
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise SettingError("languages", f"{text!r} is empty; give keys such as 'en,ar'")
    return tuple(dict.fromkeys(keys))


def parse_languages(text: str, known: Sequence[str]) -> tuple[str, ...]:
    """Parse ``"en,ar"`` into language keys, refusing keys not in ``known`` (order kept, no repeats)."""
    keys = [k.strip() for k in str(text).split(",") if k.strip()]
    if not keys:
        raise ConfigError(f"languages {text!r} is empty; give keys such as 'en,ar' (known: {list(known)})")
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise ConfigError(
            f"unknown language key(s) {unknown}; known: {list(known)} (add a prompt for a new language "
            "at `sae-store init` with --prompt KEY=TEXT)"
        )
    return tuple(dict.fromkeys(keys))


def layers_setting(help: str, none: str) -> Any:
    """The one declaration of a layer selection (``--layers SPEC``); None means ``none``."""
    return setting(
        None, help=help, metavar="SPEC", parse=parse_layer_spec, show=format_ranges, default_text=none
    )


def languages_setting(help: str, none: str) -> Any:
    """The one declaration of a language selection (``--languages LANGS``); None means ``none``."""
    return setting(None, help=help, metavar="LANGS", parse=parse_language_list, default_text=none)
