"""Typed configuration of ``sae-store evaluate`` (the pipeline YAML's ``evaluate`` section).

Every field is declared once (:mod:`sae_store.configbase`); the command's options, the YAML keys and
the job's argv follow. This module imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sae_store.analyze.config import PROBE_C, PROBE_FOLDS
from sae_store.configbase import Settings, seed_setting, setting
from sae_store.errors import ConfigError
from sae_store.intervene.config import Positions
from sae_store.models.config import FORWARD_BATCH

SampleChoice = Literal["held-out", "all"]
#: Metrics the best SAE set of a layer can be chosen by (``--rank-by``): a behaviour score with the SAE
#: spliced in at some positions, or the explained variance over image and text tokens.
RANK_METRICS = (
    "ce_loss_score:image",
    "ce_loss_score:text",
    "ce_loss_score:all",
    "kl_div_score:image",
    "kl_div_score:text",
    "kl_div_score:all",
    "explained_variance",
)


def rank_metrics() -> tuple[str, ...]:
    """The values ``--rank-by`` accepts (listed in its help)."""
    return RANK_METRICS


@dataclass(frozen=True)
class EvaluateConfig(Settings):
    """What ``sae-store evaluate`` measures, on which samples, and how it runs the model."""

    samples: SampleChoice = setting(
        "held-out",
        help="samples evaluated: those `train` holds out (as --val-fraction, --seed), or all",
        flag="sample-set",
    )
    """``held-out``: the samples ``sae-store train`` held out with the same ``val_fraction`` and
    ``seed`` (never seen by the store's own SAEs); ``all``: every sample."""
    val_fraction: float = setting(0.1, help="fraction of samples `train` held out", ge=0, lt=1)
    seed: int = seed_setting("seed of `train`'s held-out split and of the probes' folds")
    max_samples: int | None = setting(
        None, help="evaluate at most N of those samples", metavar="N", ge=1, default_text="all"
    )
    batch_tokens: int = setting(4096, help="token vectors encoded at once", metavar="N", ge=1)
    behaviour: bool = setting(
        True, help="run the model: CE loss recovered and KL score with the SAE spliced in"
    )
    splice: tuple[Positions, ...] = setting(
        ("image", "all"),
        help="token positions the SAE replaces in the model runs (image, text, all)",
        metavar="ROLES",
    )
    """One set of model runs per entry: the SAE's reconstruction (and the ablations) replace the layer
    output at image tokens, text tokens (prompt and caption) or every non-padding token."""
    mean_ablation: bool = setting(True, help="also score against mean ablation (a second baseline)")
    """Besides zero ablation (SAEBench's baseline), replace the spliced positions by the mean residual
    of their token role and language over the evaluated stored tokens."""
    caption_tokens: int = setting(
        48, help="reference-caption tokens teacher-forced, at most", metavar="N", ge=1
    )
    batch_size: int = setting(**FORWARD_BATCH)
    probe_k: tuple[int, ...] = setting(
        (1, 2, 5, 20), help="latents (and raw dimensions) of the sparse probes", metavar="N,N,...", ge=1
    )
    folds: int = setting(**PROBE_FOLDS)
    C: float = setting(**PROBE_C)
    rank_by: str = setting(
        "ce_loss_score:image",
        help="metric naming the best SAE set per layer (explained variance breaks ties and stands in when "
        "the model did not run)",
        metavar="NAME",
        choices=rank_metrics,
    )

    def check(self) -> None:
        if not self.splice:
            raise ConfigError("splice must name at least one of image, text, all")
        if len(set(self.splice)) != len(self.splice) or len(set(self.probe_k)) != len(self.probe_k):
            raise ConfigError(
                f"splice and probe_k must not repeat values, got {self.splice} and {self.probe_k}"
            )
