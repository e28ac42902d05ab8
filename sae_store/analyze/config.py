"""Typed configuration of the analyses (one dataclass per analysis, plus the cluster they run on).

Every field is declared once: ``sae-store analyze`` options and the pipeline YAML's ``analysis``
section come from these declarations. A setting that several analyses share (``--statistic``,
``--min-per-group``, ``--seed``, ``--ci-level``) is one option that sets all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sae_store.configbase import SettingError, Settings, seed_setting, setting
from sae_store.roles import roles_setting

Statistic = Literal["mean", "max", "frac"]
Test = Literal["welch", "mannwhitney"]
Correction = Literal["layer_language", "global"]
ClusterKind = Literal["local", "slurm", "none"]

#: Variable of the ``features`` group holding each per-sample statistic.
STATISTIC_VARIABLES: dict[str, str] = {"mean": "feature_mean", "max": "feature_max", "frac": "feature_frac"}


# Declarations several analyses share: one option (and YAML key) sets all of them.
_STATISTIC: dict[str, Any] = {"default": "mean", "help": "per-sample summary of a feature over its tokens"}
_MIN_PER_GROUP: dict[str, Any] = {
    "default": 10,
    "help": "fewest male and female samples to test (at least 9)",
    "metavar": "N",
    "ge": 9,
}
_CI_LEVEL: dict[str, Any] = {
    "default": 0.95,
    "help": "confidence level of every interval",
    "gt": 0,
    "lt": 1,
}
_SEED_HELP = "seed of every resampling"


@dataclass(frozen=True)
class BiasConfig(Settings):
    """Per-feature gender tests (``sae-store analyze bias``)."""

    statistic: Statistic = setting(**_STATISTIC)
    """Per-sample summary of a feature over its tokens: ``mean``, ``max`` or ``frac`` (fraction of
    tokens active); the token roles are those the features were encoded over."""
    test: Test = setting("welch", help="test whose p-values give the q-values")
    """Test whose p-values give q-values and significance: Welch's t-test or Mann-Whitney U (both are
    always computed and reported)."""
    alpha: float = setting(0.05, help="false discovery rate", gt=0, lt=1)
    """False discovery rate: features with q < alpha are reported as biased."""
    correction: Correction = setting(
        "layer_language", help="Benjamini-Hochberg family: each layer and language, or all together"
    )
    min_per_group: int = setting(**_MIN_PER_GROUP)
    """Fewest male and fewest female samples to test at all (>= 9: the normal approximation of the
    Mann-Whitney test, which scipy also picks above 8 per group)."""
    top_n: int = setting(50, help="features listed per direction (0 = all significant)", metavar="N", ge=0)
    """Most features reported per direction (male-/female-biased) per layer and language."""
    bootstrap: int = setting(1000, help="bootstrap resamples for the BCa CIs of d (0 = none)", ge=0)
    """Bootstrap resamples for the BCa intervals of d of the reported features (0: no intervals)."""
    ci_level: float = setting(**_CI_LEVEL)
    permutations: int = setting(0, help="label permutations for the null (0 = none)", metavar="N", ge=0)
    """Label permutations for the empirical null of the number of discoveries."""
    allow_incomplete: bool = setting(False, help="analyse layers whose encoding is unfinished")
    """Analyse layers whose features are not encoded for every sample (missing ones are counted as
    excluded); by default such layers are refused."""
    seed: int = seed_setting(_SEED_HELP)

    def check(self) -> None:
        if self.bootstrap == 1:
            raise SettingError(
                "bootstrap",
                "must be 0 (no confidence intervals of d) or at least 2 resamples, got 1: a BCa interval "
                "needs the spread of several resamples (the default is 1000)",
            )


@dataclass(frozen=True)
class CrossLingualConfig(Settings):
    """English vs Arabic comparison of gender effects (``sae-store analyze crosslingual``)."""

    statistic: Statistic = setting(**_STATISTIC)
    min_per_group: int = setting(**_MIN_PER_GROUP)
    top_k: int = setting(100, help="size of the top biased sets compared", ge=1)
    """Size of the top biased feature sets (by |d|) whose overlap is compared with chance."""
    permutations: int = setting(
        1000, help="random relabellings of the overlap's null", flag="overlap-permutations", metavar="N", ge=0
    )
    ci_level: float = setting(**_CI_LEVEL)
    seed: int = seed_setting(_SEED_HELP)


#: The cross-validated probes' folds and regularisation (``analyze crosslayer`` and ``evaluate``).
PROBE_FOLDS: dict[str, Any] = {"default": 5, "help": "cross-validation folds of the probes", "ge": 2}
PROBE_C: dict[str, Any] = {
    "default": 1.0,
    "help": "inverse L2 strength of the probes",
    "flag": "probe-c",
    "gt": 0,
}


@dataclass(frozen=True)
class CrossLayerConfig(Settings):
    """Per-layer summary, gender probes and feature lineage (``sae-store analyze crosslayer``)."""

    statistic: Statistic = setting(**_STATISTIC)
    min_per_group: int = setting(**_MIN_PER_GROUP)
    folds: int = setting(**PROBE_FOLDS)
    C: float = setting(**PROBE_C)
    """Inverse L2 regularisation strength of the probes (features are standardised first)."""
    raw_probe: bool = setting(True, help="also probe the raw activations, pooled over --roles")
    """Also probe the raw residual stream, mean-pooled over the tokens of ``roles``."""
    roles: tuple[str, ...] = roles_setting("token roles pooled for the raw-activation probe")
    lineage_top: int = setting(20, help="features followed to the next layer", metavar="N", ge=1)
    """Top biased features per direction whose best decoder match in the next layer is reported."""
    seed: int = seed_setting(_SEED_HELP)


@dataclass(frozen=True)
class InspectConfig(Settings):
    """Which features and samples are inspected (``interpret``, ``visual`` and ``qualitative``)."""

    n_features: int = setting(5, help="top biased features per direction", metavar="N", ge=1)
    """Top significant features per direction, layer and language taken from the bias results (when
    no features are given explicitly)."""
    top_k: int = setting(10, help="samples shown per feature", flag="top-samples", ge=1)
    """Samples shown per feature (highest activation)."""
    rank_by: Statistic = setting("max", help="per-sample statistic ranking the samples of a feature")
    bins: int = setting(30, help="histogram bins per gender and language", ge=1)
    n_samples: int = setting(6, help="random samples per gender in the qualitative table", metavar="N", ge=1)
    features_per_sample: int = setting(5, help="rows per sample in the qualitative table", metavar="N", ge=1)
    image_size: int = setting(224, help="image side under the heatmaps", ge=16)
    seed: int = seed_setting(_SEED_HELP)


@dataclass(frozen=True)
class ClusterConfig(Settings):
    """Where the analyses' tasks run (dask)."""

    kind: ClusterKind = setting(
        "local", help="dask LocalCluster, SLURMCluster, or none (run here)", flag="cluster"
    )
    """``local``: a dask LocalCluster on this machine; ``slurm``: a dask-jobqueue SLURMCluster whose
    workers are SLURM jobs; ``none``: no cluster, tasks run one after another in this process."""
    workers: int = setting(2, help="worker processes or SLURM jobs", metavar="N", ge=1)
    threads_per_worker: int = setting(1, help="threads of each worker", metavar="N", ge=1)
    """Threads per worker process (BLAS inside each task is single-threaded at 1)."""
    memory_per_worker: str = setting("4GiB", help="memory per worker", flag="worker-memory", metavar="SIZE")
    """Memory limit per worker (local) or per job (slurm), e.g. ``"8GiB"``."""
    slurm_queue: str | None = setting(
        None, help="partition of the worker jobs (--cluster slurm)", metavar="PARTITION"
    )
    slurm_account: str | None = setting(None, help="account of the worker jobs", metavar="ACCOUNT")
    slurm_walltime: str = setting("02:00:00", help="time limit of the worker jobs", metavar="HH:MM:SS")
    slurm_directives: tuple[str, ...] = setting(
        (),
        help="extra #SBATCH option for worker jobs (repeatable)",
        flag="slurm-directive",
        metavar="LINE",
        repeat=True,
    )
    """Extra ``#SBATCH`` lines for the worker jobs, e.g. ``("--qos=short",)``."""
