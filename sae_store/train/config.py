"""Typed configuration of SAE training and feature encoding.

A run's configuration (:class:`RunConfig`) nests one sub-config per component: the SAE
(:class:`SaeConfig`), the data provider (:class:`DataConfig`) and the trainer
(:class:`TrainerConfig`); each component receives only its own. All of them round-trip through
JSON with ``to_dict`` / ``from_dict``, which refuses unknown keys.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar, get_args

from sae_store.configbase import check_known_keys
from sae_store.errors import ConfigError
from sae_store.store.shards import available_cores

Architecture = Literal["topk", "batchtopk", "relu", "jumprelu", "matryoshka_batchtopk"]
Role = Literal["image", "text", "special"]
BDecInit = Literal["mean", "zeros"]

ARCHITECTURES: tuple[str, ...] = get_args(Architecture)
#: Architectures that choose their active latents by rank (k) and revive dead ones with AuxK.
TOPK_ARCHITECTURES: tuple[str, ...] = ("topk", "batchtopk", "matryoshka_batchtopk")
ROLES: tuple[str, ...] = get_args(Role)
#: Starts of the decoder bias (:attr:`TrainerConfig.b_dec_init`).
B_DEC_INITS: tuple[str, ...] = get_args(BDecInit)
#: Token roles used when none are given: special tokens (BOS, turn markers) and padding excluded.
DEFAULT_ROLES: tuple[str, ...] = ("image", "text")

_C = TypeVar("_C")


def parse_roles(text: str) -> tuple[str, ...]:
    """Parse ``image,text`` (or ``all`` = image and text) into a tuple of role names."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    roles = DEFAULT_ROLES if parts == ["all"] else tuple(parts)
    check_roles(roles)
    return roles


def check_roles(roles: tuple[str, ...]) -> None:
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles or len(set(roles)) != len(roles):
        raise ConfigError(
            f"roles must be distinct names from {list(ROLES)} (or 'all' for image and text), "
            f"got {list(roles)!r}"
        )


def _positive(name: str, value: object, *, integer: bool = True, allow_zero: bool = False) -> None:
    kind = int if integer else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):  # type: ignore[operator]
        what = "integer" if integer else "number"
        raise ConfigError(
            f"{name} must be a {'non-negative' if allow_zero else 'positive'} {what}, got {value!r}"
        )


def _from_dict(cls: type[_C], data: dict[str, Any], what: str) -> _C:
    check_known_keys(data, cls, f"{what} config")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**values)


@dataclass(frozen=True)
class SaeConfig:
    """Shape and training objective of one sparse autoencoder."""

    architecture: Architecture = "topk"
    """``topk`` (OpenAI, with AuxK), ``batchtopk`` (saved as JumpReLU for inference), ``relu``
    (Anthropic: L1 weighted by decoder norms), ``jumprelu`` (Gemma Scope: L0 with a
    straight-through estimator) or ``matryoshka_batchtopk`` (BatchTopK whose nested prefixes of
    latents each reconstruct the input; saved as JumpReLU)."""

    d_in: int = 0
    """Input width (the store's hidden size); 0 until the data is known."""

    expansion: int = 8
    """d_sae = expansion * d_in unless ``d_sae`` is given."""

    d_sae: int = 0
    """Number of latents; 0 means ``expansion * d_in``."""

    k: int = 64
    """Active latents per token (topk) or on average per token (batchtopk)."""

    aux_k: int = 0
    """Dead latents used by the AuxK loss; 0 means ``d_in // 2`` (OpenAI's heuristic)."""

    aux_k_coefficient: float = 1 / 32
    """Weight of the AuxK loss relative to the reconstruction loss (OpenAI's alpha)."""

    decoder_init_norm: float = 0.0
    """Norm of every decoder row at initialisation (the encoder starts as its transpose); 0 means 1
    (for ``relu`` too: Anthropic's 0.1 gave FVU 0.75 instead of 0.49 in 300 steps). Norm-constrained
    architectures (all but ``relu``) keep the rows at this norm while training; the saved SAE has it
    folded into the encoder (unit-norm decoder rows, same reconstruction)."""

    matryoshka_widths: tuple[int, ...] = ()
    """matryoshka_batchtopk: widths of the nested dictionaries (increasing, the last one d_sae; as
    SAELens's ``matryoshka_widths``); each prefix of latents is trained to reconstruct the input on its
    own. Empty means d_sae/16, d_sae/8, d_sae/4, d_sae/2, d_sae."""

    l1_coefficient: float = 5.0
    """relu: weight of the decoder-norm-weighted L1 penalty (inputs normalised to norm sqrt(d_in))."""

    l0_coefficient: float = 1.0
    """jumprelu: weight of the L0 penalty."""

    sparsity_warmup_steps: int = 0
    """relu/jumprelu: the sparsity coefficient grows linearly from 0 over this many steps."""

    jumprelu_init_threshold: float = 0.01
    """jumprelu: initial threshold of every latent."""

    jumprelu_bandwidth: float = 0.05
    """jumprelu: width of the rectangle kernel of the straight-through estimator."""

    batchtopk_threshold_lr: float = 0.01
    """batchtopk: rate of the running estimate of the inference threshold."""

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"architecture must be one of {list(ARCHITECTURES)}, got {self.architecture!r}")
        _positive("d_in", self.d_in, allow_zero=True)
        _positive("expansion", self.expansion)
        _positive("d_sae", self.d_sae, allow_zero=True)
        _positive("k", self.k)
        _positive("aux_k", self.aux_k, allow_zero=True)
        _positive("sparsity_warmup_steps", self.sparsity_warmup_steps, allow_zero=True)
        for name in ("aux_k_coefficient", "l1_coefficient", "l0_coefficient"):
            _positive(name, getattr(self, name), integer=False, allow_zero=True)
        for name in ("jumprelu_init_threshold", "jumprelu_bandwidth", "batchtopk_threshold_lr"):
            _positive(name, getattr(self, name), integer=False)
        _positive("decoder_init_norm", self.decoder_init_norm, integer=False, allow_zero=True)
        object.__setattr__(self, "matryoshka_widths", tuple(self.matryoshka_widths))
        w = self.matryoshka_widths
        if w and (
            any(not isinstance(v, int) or v <= 0 for v in w)
            or list(w) != sorted(set(w))
            or (self.d_in and w[-1] != self.n_latents)
        ):
            raise ConfigError(
                f"matryoshka_widths must be increasing positive integers ending at d_sae={self.n_latents}, "
                f"got {list(w)}"
            )
        if self.d_in and self.architecture in TOPK_ARCHITECTURES and self.k > self.n_latents:
            raise ConfigError(
                f"k={self.k} is larger than d_sae={self.n_latents}: a {self.architecture} SAE cannot keep "
                "more latents than it has; lower k or raise the expansion"
            )

    @property
    def n_latents(self) -> int:
        """d_sae, resolved from ``expansion`` when not given."""
        return self.d_sae or self.expansion * self.d_in

    def widths(self) -> tuple[int, ...]:
        """matryoshka_batchtopk: the nested widths (``matryoshka_widths`` or the doubling default)."""
        if self.matryoshka_widths:
            return self.matryoshka_widths
        n = self.n_latents
        return tuple(sorted({max(n >> i, 1) for i in range(4, 0, -1)} | {n}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SaeConfig:
        return _from_dict(cls, data, "SAE")


def default_read_threads() -> int:
    """The cores this process may use, at most 8: more decoding threads than cores only contend."""
    return min(available_cores(), 8)


@dataclass(frozen=True)
class DataConfig:
    """What the data provider streams from the store and how it shuffles it."""

    layer: int
    """Decoder layer whose residual stream is used."""

    languages: tuple[str, ...] = ()
    """Prompt languages to mix; empty means every language of the store (one shared SAE per layer
    keeps feature indices comparable across languages)."""

    roles: tuple[str, ...] = DEFAULT_ROLES
    """Token roles used (``image``, ``text``, ``special``); padding is never used."""

    batch_size: int = 4096
    """Token vectors per training batch."""

    val_fraction: float = 0.1
    """Fraction of samples (images, in every language) held out for evaluation."""

    memory_budget: int = 2 * 1024**3
    """Bytes the provider may hold. When the selected training data fits, it is loaded once and
    sampled in RAM; otherwise shard blocks stream through a shuffle buffer (two of them with
    prefetch) sized to fit."""

    prefetch: bool = True
    """Load the next shuffle buffer in a background thread while the current one is consumed."""

    read_threads: int = field(default_factory=default_read_threads)
    """Samples (one zarr chunk each) decoded concurrently when a shuffle buffer is filled; each
    thread holds one sample's chunk while decoding. Default: :func:`default_read_threads`."""

    norm_tokens: int = 100_000
    """Token vectors used to estimate the input normalisation (mean norm -> sqrt(d_in))."""

    max_eval_tokens: int = 100_000
    """At most this many held-out token vectors are used for evaluation."""

    seed: int = 0
    """Seed of the train/validation split and of every shuffle."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "languages", tuple(self.languages))
        object.__setattr__(self, "roles", tuple(self.roles))
        _positive("layer", self.layer, allow_zero=True)
        check_roles(self.roles)
        _positive("batch_size", self.batch_size)
        _positive("memory_budget", self.memory_budget)
        _positive("read_threads", self.read_threads)
        _positive("norm_tokens", self.norm_tokens)
        _positive("max_eval_tokens", self.max_eval_tokens)
        _positive("seed", self.seed, allow_zero=True)
        if not isinstance(self.val_fraction, int | float) or not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataConfig:
        return _from_dict(cls, data, "data")


@dataclass(frozen=True)
class TrainerConfig:
    """Optimisation, logging and checkpointing of one training run."""

    steps: int = 2000
    """Optimizer steps (one batch each)."""

    lr: float = 3e-4
    """Peak Adam learning rate (chosen by ``benchmarks/bench_train_quality.py``: with the dead window
    in tokens it meets the quality targets on both synthetic dictionaries, where 3e-3 leaves more
    latents dead)."""

    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam's beta1 and beta2."""

    lr_warmup_steps: int = 100
    """The learning rate grows linearly from 0 over this many steps (warm-up and decay together
    must fit in ``steps``)."""

    lr_decay_fraction: float = 0.2
    """The learning rate decays linearly to 0 over this final fraction of the steps."""

    grad_clip: float = 1.0
    """Maximum gradient norm (0 disables clipping)."""

    b_dec_init: BDecInit = "mean"
    """How the decoder bias starts: ``mean``, the mean of the first training batch (as sparsify and
    OpenAI's TopK recipe start it; residual streams carry large constant channels, and from zero they
    hold nearly every latent dead), or ``zeros`` (SAELens's default)."""

    log_every: int = 50
    """Steps between metric records (metrics.jsonl and the progress bar)."""

    checkpoint_every: int = 500
    """Steps between checkpoints (0 disables them)."""

    dead_window_tokens: int = 200_000
    """A latent that has not fired on this many training tokens is dead (reported, and fed to AuxK);
    counted in tokens so that it means the same at any batch size."""

    seed: int = 0
    """Seed of the weight initialisation."""

    device: str = "auto"
    """Torch device: ``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda``, ``cuda:1``, ..."""

    autocast_bf16: bool = False
    """On CUDA, run the forward pass under bfloat16 autocast (weights, optimizer and losses stay
    float32). Ignored on CPU."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "adam_betas", tuple(self.adam_betas))
        _positive("steps", self.steps)
        _positive("lr", self.lr, integer=False)
        _positive("lr_warmup_steps", self.lr_warmup_steps, allow_zero=True)
        _positive("grad_clip", self.grad_clip, integer=False, allow_zero=True)
        _positive("log_every", self.log_every)
        _positive("checkpoint_every", self.checkpoint_every, allow_zero=True)
        _positive("dead_window_tokens", self.dead_window_tokens)
        _positive("seed", self.seed, allow_zero=True)
        if self.b_dec_init not in B_DEC_INITS:
            raise ConfigError(f"b_dec_init must be one of {', '.join(B_DEC_INITS)}, got {self.b_dec_init!r}")
        if not 0 <= self.lr_decay_fraction <= 1:
            raise ConfigError(f"lr_decay_fraction must be in [0, 1], got {self.lr_decay_fraction!r}")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ConfigError(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas!r}")
        if self.lr_warmup_steps + self.lr_decay_steps > self.steps:
            raise ConfigError(
                f"the learning-rate schedule ({self.lr_warmup_steps} warm-up steps + {self.lr_decay_steps} "
                f"decay steps) is longer than the run ({self.steps} steps); lower lr_warmup_steps or "
                "lr_decay_fraction, or raise steps"
            )

    @property
    def lr_decay_steps(self) -> int:
        """Final steps over which the learning rate decays linearly to 0."""
        return int(self.lr_decay_fraction * self.steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainerConfig:
        return _from_dict(cls, data, "trainer")


#: Settings that may change when a run is resumed (they do not affect the result).
RESUMABLE_CHANGES = frozenset(
    {
        "trainer.log_every",
        "trainer.checkpoint_every",
        "trainer.device",
        "data.read_threads",
        "data.prefetch",
    }
)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one SAE training run; saved beside the SAE."""

    sae: SaeConfig
    data: DataConfig
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"sae": self.sae.to_dict(), "data": self.data.to_dict(), "trainer": self.trainer.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        unknown = sorted(set(data) - {"sae", "data", "trainer"})
        if unknown:
            raise ConfigError(f"unknown run config keys {unknown}; allowed: ['data', 'sae', 'trainer']")
        return cls(
            sae=SaeConfig.from_dict(data["sae"]),
            data=DataConfig.from_dict(data["data"]),
            trainer=TrainerConfig.from_dict(data.get("trainer", {})),
        )

    def differences(self, other: RunConfig) -> list[str]:
        """Settings of ``other`` that differ from this one and would change the result of a resumed run."""
        out = []
        for part in ("sae", "data", "trainer"):
            mine, theirs = getattr(self, part).to_dict(), getattr(other, part).to_dict()
            for key in mine:
                if mine[key] != theirs[key] and f"{part}.{key}" not in RESUMABLE_CHANGES:
                    out.append(f"{part}.{key}: {mine[key]!r} -> {theirs[key]!r}")
        return out


@dataclass(frozen=True)
class EncodeConfig:
    """How ``sae-store encode`` turns activations into per-sample feature statistics."""

    roles: tuple[str, ...] = DEFAULT_ROLES
    """Token roles whose latents are summarised (mean, max, fraction active) per sample."""

    batch_tokens: int = 8192
    """Token vectors encoded at once (bounds memory: batch_tokens x d_sae floats)."""

    device: str = "auto"
    """Torch device for the SAE: ``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda``, ..."""

    sae_memory: int = 4 * 1024**3
    """Bytes of SAE weights held at once. Layers are encoded in groups whose SAEs fit, block by block,
    so each block's statistics file is rewritten once per group instead of once per layer."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", tuple(self.roles))
        check_roles(self.roles)
        _positive("batch_tokens", self.batch_tokens)
        _positive("sae_memory", self.sae_memory)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
