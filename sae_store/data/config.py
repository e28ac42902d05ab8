"""Typed configuration of ``sae-store prepare`` (YAML ``samples:``); imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sae_store.configbase import Settings, seed_setting, setting


@dataclass(frozen=True)
class PrepareConfig(Settings):
    """How ``prepare`` labels and selects samples from a captions CSV."""

    num_samples: int | None = setting(
        None, help="keep N images, stratified by gender", metavar="N", ge=1, default_text="all usable images"
    )
    """Keep this many images, stratified by gender label with proportional allocation."""
    seed: int = seed_setting("subsample seed")
    """Seed of the subsample; the same inputs and seed give the same samples."""
    gender_column: str | None = setting(
        None,
        help="use this CSV column (male/female/m/f/man/woman) as the label",
        metavar="NAME",
        default_text="labels from the captions",
    )
    """A column of the CSV holding the gender (empty cells mean unknown) instead of the caption labels."""
    keep_unlabelled: bool = setting(False, help="also keep images labelled ambiguous or unknown")
    """By default ambiguous and unknown images are excluded (and listed in the report)."""


#: How many demo images, declared once for ``make-demo-data`` and the demo config's ``demo:`` section.
DEMO_IMAGES: dict[str, Any] = {"default": 48, "help": "demo images (four of them deliberate faults)", "ge": 8}


@dataclass(frozen=True)
class DemoDataConfig(Settings):
    """The generated demo captions and images (``make-demo-data``)."""

    n_images: int = setting(**DEMO_IMAGES)
    seed: int = seed_setting("seed of the demo data")
