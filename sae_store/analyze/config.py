"""Typed configuration of the analyses (one dataclass per analysis, plus the cluster they run on)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Self, get_args

from sae_store.configbase import check_choice, check_known_keys
from sae_store.errors import ConfigError

Statistic = Literal["mean", "max", "frac"]
Test = Literal["welch", "mannwhitney"]
Correction = Literal["layer_language", "global"]
ClusterKind = Literal["local", "slurm", "none"]

#: Variable of the ``features`` group holding each per-sample statistic.
STATISTIC_VARIABLES: dict[str, str] = {"mean": "feature_mean", "max": "feature_max", "frac": "feature_frac"}


def _int_at_least(name: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def _open_unit(name: str, value: object) -> None:
    if not isinstance(value, float | int) or not 0.0 < float(value) < 1.0:
        raise ConfigError(f"{name} must be a number strictly between 0 and 1, got {value!r}")


class _Config:
    """to_dict / from_dict shared by the analysis configs (unknown keys are refused)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        check_known_keys(data, cls, cls.__name__)
        return cls(**data)


@dataclass(frozen=True)
class BiasConfig(_Config):
    """Per-feature gender tests (``sae-store analyze bias``)."""

    statistic: Statistic = "mean"
    """Per-sample summary of a feature over its tokens: ``mean``, ``max`` or ``frac`` (fraction of
    tokens active); the token roles are those the features were encoded over."""
    test: Test = "welch"
    """Test whose p-values give q-values and significance: Welch's t-test or Mann-Whitney U (both are
    always computed and reported)."""
    alpha: float = 0.05
    """False discovery rate: features with q < alpha are reported as biased."""
    correction: Correction = "layer_language"
    """Benjamini-Hochberg family: each (layer, language) separately, or all of them pooled."""
    min_per_group: int = 10
    """Fewest male and fewest female samples to test at all (>= 9: the normal approximation of the
    Mann-Whitney test, which scipy also picks above 8 per group)."""
    top_n: int = 50
    """Most features reported per direction (male-/female-biased) per layer and language; 0 = all
    significant ones."""
    bootstrap: int = 1000
    """Bootstrap resamples for the CIs of the reported features' d (0 = no CIs)."""
    ci_level: float = 0.95
    """Confidence level of the bootstrap intervals."""
    permutations: int = 0
    """Label permutations for the empirical null of the number of discoveries (0 = none)."""
    allow_incomplete: bool = False
    """Analyse layers whose features are not encoded for every sample (missing ones are counted as
    excluded); by default such layers are refused."""
    seed: int = 0
    """Seed of the bootstrap and the permutations."""

    def __post_init__(self) -> None:
        check_choice("statistic", self.statistic, get_args(Statistic))
        check_choice("test", self.test, get_args(Test))
        check_choice("correction", self.correction, get_args(Correction))
        _open_unit("alpha", self.alpha)
        _open_unit("ci_level", self.ci_level)
        _int_at_least("min_per_group", self.min_per_group, 9)
        _int_at_least("top_n", self.top_n, 0)
        _int_at_least("bootstrap", self.bootstrap, 0)
        _int_at_least("permutations", self.permutations, 0)
        _int_at_least("seed", self.seed, 0)


@dataclass(frozen=True)
class CrossLingualConfig(_Config):
    """English vs Arabic comparison of gender effects (``sae-store analyze crosslingual``)."""

    statistic: Statistic = "mean"
    """Per-sample summary of each feature used (see :attr:`BiasConfig.statistic`)."""
    min_per_group: int = 10
    """Fewest male and fewest female samples required (as in :class:`BiasConfig`)."""
    top_k: int = 100
    """Size of the top biased feature sets (by |d|) whose overlap is compared with chance."""
    permutations: int = 1000
    """Random relabellings of feature indices for the overlap's permutation p-value."""
    bootstrap: int = 200
    """Bootstrap resamples of images for the CI of the Spearman correlation of effect sizes."""
    ci_level: float = 0.95
    """Confidence level of the CI."""
    seed: int = 0
    """Seed of the permutations and the bootstrap."""

    def __post_init__(self) -> None:
        check_choice("statistic", self.statistic, get_args(Statistic))
        _int_at_least("min_per_group", self.min_per_group, 9)
        _int_at_least("top_k", self.top_k, 1)
        _int_at_least("permutations", self.permutations, 0)
        _int_at_least("bootstrap", self.bootstrap, 0)
        _open_unit("ci_level", self.ci_level)
        _int_at_least("seed", self.seed, 0)


@dataclass(frozen=True)
class CrossLayerConfig(_Config):
    """Per-layer summary, gender probes and feature lineage (``sae-store analyze crosslayer``)."""

    statistic: Statistic = "mean"
    """Per-sample summary of each feature used (see :attr:`BiasConfig.statistic`)."""
    min_per_group: int = 10
    """Fewest male and fewest female samples required (as in :class:`BiasConfig`)."""
    folds: int = 5
    """Stratified cross-validation folds of the logistic-regression probes."""
    C: float = 1.0
    """Inverse L2 regularisation strength of the probes (features are standardised first)."""
    raw_probe: bool = True
    """Also probe the raw residual stream, mean-pooled over the tokens of ``roles``."""
    roles: tuple[str, ...] = ("image", "text")
    """Token roles pooled for the raw-activation probe."""
    lineage_top: int = 20
    """Top biased features per direction whose best decoder match in the next layer is reported."""
    seed: int = 0
    """Seed of the fold assignment."""

    def __post_init__(self) -> None:
        check_choice("statistic", self.statistic, get_args(Statistic))
        _int_at_least("min_per_group", self.min_per_group, 9)
        _int_at_least("folds", self.folds, 2)
        if not isinstance(self.C, float | int) or self.C <= 0:
            raise ConfigError(f"C must be a positive number, got {self.C!r}")
        bad = [r for r in self.roles if r not in ("image", "text", "special")]
        if bad or not self.roles:
            raise ConfigError(
                f"roles must be a non-empty subset of ['image', 'text', 'special'], got {self.roles!r}"
            )
        _int_at_least("lineage_top", self.lineage_top, 1)
        _int_at_least("seed", self.seed, 0)


@dataclass(frozen=True)
class InspectConfig(_Config):
    """Which features and samples are inspected (``interpret``, ``visual`` and ``qualitative``)."""

    n_features: int = 5
    """Top significant features per direction, layer and language taken from the bias results (when
    no features are given explicitly)."""
    top_k: int = 10
    """Samples shown per feature (highest activation)."""
    rank_by: Statistic = "max"
    """Per-sample statistic ranking the samples of a feature."""
    bins: int = 30
    """Bins of the activation histograms per gender and language."""
    n_samples: int = 6
    """Samples per gender in the qualitative table (when none are given explicitly)."""
    features_per_sample: int = 5
    """Most active biased features listed per sample in the qualitative table."""
    image_size: int = 224
    """Side in pixels the images are resized to under the heatmaps."""
    seed: int = 0
    """Seed choosing the qualitative samples."""

    def __post_init__(self) -> None:
        for name in ("n_features", "top_k", "bins", "n_samples", "features_per_sample"):
            _int_at_least(name, getattr(self, name), 1)
        check_choice("rank_by", self.rank_by, get_args(Statistic))
        _int_at_least("image_size", self.image_size, 16)
        _int_at_least("seed", self.seed, 0)


@dataclass(frozen=True)
class ClusterConfig(_Config):
    """Where the analyses' tasks run (dask)."""

    kind: ClusterKind = "local"
    """``local``: a dask LocalCluster on this machine; ``slurm``: a dask-jobqueue SLURMCluster whose
    workers are SLURM jobs; ``none``: no cluster, tasks run one after another in this process."""
    workers: int = 2
    """Worker processes (local) or worker jobs (slurm)."""
    threads_per_worker: int = 1
    """Threads per worker process (BLAS inside each task is single-threaded at 1)."""
    memory_per_worker: str = "4GiB"
    """Memory limit per worker (local) or per job (slurm), e.g. ``"8GiB"``."""
    slurm_queue: str | None = None
    """SLURM partition of the worker jobs."""
    slurm_account: str | None = None
    """SLURM account charged for the worker jobs."""
    slurm_walltime: str = "02:00:00"
    """Wall-time limit of each worker job."""
    slurm_directives: tuple[str, ...] = field(default_factory=tuple)
    """Extra ``#SBATCH`` lines for the worker jobs, e.g. ``("--qos=short",)``."""

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, get_args(ClusterKind))
        _int_at_least("workers", self.workers, 1)
        _int_at_least("threads_per_worker", self.threads_per_worker, 1)
