"""Configuration of an extraction run, its defaults, and the parsers behind its command-line options."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from sae_store.config import parse_layer_spec
from sae_store.configbase import check_known_keys
from sae_store.errors import ConfigError

#: Default instruction per language key; the one place these texts live.
DEFAULT_PROMPTS: dict[str, str] = {
    "en": "Describe the person in this image in detail.",
    "ar": "صف الشخص في هذه الصورة بالتفصيل.",
}

OnNonfinite = Literal["error", "record"]


def parse_layers(text: str, n_layers: int) -> tuple[int, ...]:
    """Parse a layer selection such as ``"0-33"``, ``"10,22"`` or ``"0-3,10,20-22"``.

    Parameters
    ----------
    text
        Comma-separated layer indices and inclusive ``A-B`` ranges.
    n_layers
        Decoder layers of the model; every index must be in ``0..n_layers-1``.

    Returns
    -------
    tuple of int
        Sorted.

    Raises
    ------
    ConfigError
        For malformed items, descending ranges, a layer given twice, or layers out of range.
    """
    layers = parse_layer_spec(text)
    bad = sorted(layer for layer in layers if layer >= n_layers)
    if bad:
        raise ConfigError(
            f"layers {text!r}: {bad} out of range; the model has {n_layers} layers, 0..{n_layers - 1}"
        )
    return layers


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


def parse_prompts(items: Sequence[str]) -> dict[str, str]:
    """Parse ``KEY=TEXT`` items (``--prompt fr=Décris ...``) into a prompt per language key."""
    prompts: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", key.strip()):
            raise ConfigError(f"prompt {item!r} must look like KEY=TEXT with a key such as 'en' or 'fr'")
        if not value.strip():
            raise ConfigError(f"prompt for {key.strip()!r} is empty")
        prompts[key.strip()] = value.strip()
    return prompts


def slurm_task(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """The array task ``(index, count)`` from ``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT``.

    ``(0, 1)`` outside an array job. Array ids are taken relative to ``SLURM_ARRAY_TASK_MIN`` so
    ``--array=1-8`` works as well as ``--array=0-7``.
    """
    env = os.environ if environ is None else environ
    if "SLURM_ARRAY_TASK_ID" not in env:
        return 0, 1
    try:
        task_id = int(env["SLURM_ARRAY_TASK_ID"])
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        count = int(env.get("SLURM_ARRAY_TASK_COUNT", "1"))
    except ValueError as e:
        raise ConfigError(f"SLURM array variables are not integers: {e}") from e
    return task_id - first, count


@dataclass(frozen=True)
class ExtractConfig:
    """What one extraction task does; the store and model come separately."""

    layers: tuple[int, ...] | None = None
    """Layers to extract; None means every layer the store holds."""

    languages: tuple[str, ...] | None = None
    """Language keys to extract; None means every language the store holds."""

    batch_size: int = 8
    """Samples per forward pass. Batches never span two shard blocks."""

    task_index: int = 0
    """This task's index among ``task_count`` array tasks (each owns a contiguous run of blocks)."""

    task_count: int = 1
    """Number of array tasks sharing the work."""

    sample_range: tuple[int, int] | None = None
    """Manual ``[start, stop)`` of samples (whole shard blocks only); split further by the task."""

    on_nonfinite: OnNonfinite = "error"
    """"error": stop at a block holding NaN/inf and write nothing of it; "record": store the values
    as they are and count them in ``nonfinite``."""

    quota: int | None = None
    """Byte quota of the store's filesystem area; the run refuses to start if it would exceed it."""

    pending_blocks: int = 1
    """Blocks handed to the background writer that may wait while the next block is computed.
    Memory holds ``pending_blocks + 1`` language blocks of activations besides the model."""

    writer_threads: int | None = None
    """Threads that round, measure and encode activations while the model runs; None: the cores
    left after the model (all but one beside a GPU, those torch does not use on a CPU)."""

    progress: bool = True
    """Show a progress bar on a terminal (a log line per block is written regardless)."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "task_count", "pending_blocks", "writer_threads"):
            value = getattr(self, name)
            if name == "writer_threads" and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.task_index, int) or not 0 <= self.task_index < self.task_count:
            raise ConfigError(
                f"task_index must be in 0..{self.task_count - 1} for task_count {self.task_count}, "
                f"got {self.task_index!r}"
            )
        if self.on_nonfinite not in get_args(OnNonfinite):
            raise ConfigError(
                f"on_nonfinite must be one of {list(get_args(OnNonfinite))}, got {self.on_nonfinite!r}"
            )
        if self.quota is not None and self.quota <= 0:
            raise ConfigError(f"quota must be a positive number of bytes, got {self.quota!r}")
        if self.sample_range is not None:
            start, stop = self.sample_range
            if not 0 <= start < stop:
                raise ConfigError(f"sample_range must be a non-empty range start < stop, got {start}:{stop}")
        if self.layers is not None and not self.layers:
            raise ConfigError("layers must not be empty; leave it None for every stored layer")
        if self.languages is not None and not self.languages:
            raise ConfigError("languages must not be empty; leave it None for every stored language")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExtractConfig:
        check_known_keys(data, cls, "extract config")
        values = dict(data)
        for key in ("layers", "languages", "sample_range"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)
