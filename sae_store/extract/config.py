"""Configuration of an extraction run, its defaults, and the parsers behind its command-line options."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sae_store.configbase import Settings, setting
from sae_store.errors import ConfigError
from sae_store.models.config import FORWARD_BATCH
from sae_store.selection import languages_setting, layers_setting
from sae_store.units import format_size, parse_size

#: Default instruction per language key; the one place these texts live.
DEFAULT_PROMPTS: dict[str, str] = {
    "en": "Describe the person in this image in detail.",
    "ar": "صف الشخص في هذه الصورة بالتفصيل.",
}

OnNonfinite = Literal["error", "record"]


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


@dataclass(frozen=True)
class ExtractConfig(Settings):
    """What one extraction task does; the store and model come separately."""

    layers: tuple[int, ...] | None = layers_setting("only these stored layers", "all")
    """Layers to extract; None means every layer the store holds."""

    languages: tuple[str, ...] | None = languages_setting("only these stored languages", "all")
    """Language keys to extract; None means every language the store holds."""

    batch_size: int = setting(**FORWARD_BATCH)
    """Samples per forward pass. Batches never span two shard blocks."""

    task_index: int = setting(0, help="this array task's index", expose=False)
    """This task's index among ``task_count`` array tasks (each owns a contiguous run of blocks)."""

    task_count: int = setting(1, help="number of array tasks sharing the work", ge=1, expose=False)

    sample_range: tuple[int, int] | None = setting(
        None, help="manual [start, stop) of samples (whole shard blocks)", ge=0, expose=False
    )
    """Manual ``[start, stop)`` of samples (whole shard blocks only); split further by the task."""

    on_nonfinite: OnNonfinite = setting("error", help="stop on NaN/inf activations, or store and count them")
    """"error": stop at a block holding NaN/inf and write nothing of it; "record": store the values
    as they are and count them in ``nonfinite``."""

    quota: int | None = setting(
        None,
        help="refuse to start if the store would outgrow SIZE, e.g. 500G",
        metavar="SIZE",
        parse=parse_size,
        show=format_size,
        gt=0,
        what="a positive number of bytes",
        default_text="no quota",
    )
    """Byte quota of the store's filesystem area; the run refuses to start if it would exceed it."""

    pending_blocks: int = setting(
        1, help="blocks waiting for the background writer while the next one is computed", ge=1
    )
    """Memory holds ``pending_blocks + 1`` language blocks of activations besides the model."""

    writer_threads: int | None = setting(
        None,
        help="threads encoding activations while the model runs",
        metavar="N",
        ge=1,
        default_text="the cores the model leaves: all but one beside a GPU, those torch leaves free on a CPU",
    )

    progress: bool = setting(True, help="show a progress bar on a terminal", expose=False)
    """Show a progress bar on a terminal (a log line per block is written regardless)."""

    def check(self) -> None:
        if not 0 <= self.task_index < self.task_count:
            raise self.rule_error(
                f"{{task_index}} must be in 0..{self.task_count - 1} for {{task_count}} {self.task_count}, "
                f"got {self.task_index!r}"
            )
        if self.sample_range is not None:
            start, stop = self.sample_range
            if not start < stop:
                raise self.rule_error(
                    f"{{sample_range}} must be a non-empty range A:B with A < B, got {start}:{stop}"
                )
        if self.layers is not None and not self.layers:
            raise self.rule_error("{layers} must not be empty; leave it unset for every stored layer")
        if self.languages is not None and not self.languages:
            raise self.rule_error("{languages} must not be empty; leave it unset for every stored language")
