"""Typed configuration of captions and interventions (``sae-store caption`` / ``intervene``).

Every field is declared once: the commands' options and the pipeline YAML's ``interventions``
section come from these declarations. This module imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sae_store.configbase import Settings, seed_setting, setting
from sae_store.errors import ConfigError
from sae_store.models.config import FORWARD_BATCH

EditMode = Literal["ablate", "amplify", "neutralise"]
#: The US spelling, read as the mode's name.
EDIT_MODE_ALIASES = {"neutralize": "neutralise"}
Positions = Literal["image", "text", "all"]


def alpha_problem(mode: str, alpha: float) -> str | None:
    """Why ``alpha`` cannot go with ``mode`` (an amplification factor must be > 0), naming the two as
    ``{alpha}`` and ``{mode}``; None if it can."""
    if mode == "amplify" and not alpha > 0:
        return (
            f"{{alpha}} must be > 0 for {{mode}} 'amplify', got {alpha!r}; use {{mode}} 'ablate' to remove "
            "features (alpha = 0)"
        )
    return None


def check_alpha(mode: str, alpha: float) -> None:
    """Refuse an amplification factor that is not > 0 for mode ``amplify``."""
    problem = alpha_problem(mode, alpha)
    if problem:
        raise ConfigError(problem.format(alpha="alpha", mode="mode"))


@dataclass(frozen=True)
class CaptionConfig(Settings):
    """How captions are generated."""

    max_new_tokens: int = setting(32, help="caption length limit", metavar="N", ge=1)
    """Most tokens generated per caption (greedy decoding stops earlier at end of turn)."""
    batch_size: int = setting(**FORWARD_BATCH)
    """Images per generate call."""


@dataclass(frozen=True)
class InterventionConfig(Settings):
    """How one intervention experiment is run."""

    mode: EditMode = setting(help="what is done to the features", aliases=EDIT_MODE_ALIASES)
    """``"ablate"``, ``"amplify"`` or ``"neutralise"``."""
    features: str = setting(
        "top-male:20",
        help="top-male:N or top-female:N (the N most biased significant features; fewer if fewer are "
        "significant, with a warning) or indices i,j,k",
        metavar="SET",
    )
    alpha: float = setting(2.0, help="amplification factor, > 0")
    """Amplification factor of the targeted run (``"amplify"``)."""
    positions: Positions = setting("all", help="tokens edited")
    """Token positions edited: ``"image"``, ``"text"`` or ``"all"``."""
    n_controls: int = setting(10, help="random feature sets (0 or >= 10)", flag="controls", metavar="N", ge=0)
    """Random feature sets of the targeted set's size (0 for none, else at least 10)."""
    seed: int = seed_setting("seed of controls and bootstrap")
    n_positions: int = setting(5, help="caption positions of the metric", ge=1)
    """First content positions of the baseline caption that metric (a) averages over."""
    dose_alphas: tuple[float, ...] = setting(
        (0.5, 1.0, 2.0, 4.0, 8.0),
        help="alphas of the dose-response (amplify)",
        flag="dose",
        gt=0,
    )
    """Amplification factors of the dose-response (``"amplify"`` only; each > 0)."""
    batch_size: int = setting(**FORWARD_BATCH)
    max_new_tokens: int | None = setting(
        None, help="regenerated caption length", metavar="N", ge=1, default_text="as stored with the captions"
    )
    """Length limit of the regenerated captions (None: that of the stored baseline captions)."""
    regenerate: bool = setting(True, help="regenerate captions with the edit and count their gender terms")
    """Metric (b): regenerated captions' gender terms."""
    max_samples: int | None = setting(
        None, help="use at most N samples, balanced by gender", metavar="N", ge=1, default_text="all"
    )
    bootstrap: int = setting(2000, help="bootstrap resamples of the BCa CIs", ge=2)
    rank_language: str | None = setting(
        None,
        help="language of the bias ranking for top-male/top-female",
        metavar="LANG",
        default_text="the first analysed",
    )

    def check(self) -> None:
        problem = alpha_problem(self.mode, self.alpha)
        if problem:
            raise self.rule_error(problem)
        if self.n_controls != 0 and self.n_controls < 10:
            raise self.rule_error(
                f"{{n_controls}} must be 0 (no controls) or at least 10, got {self.n_controls!r}"
            )
