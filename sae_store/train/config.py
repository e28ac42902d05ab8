"""Typed configuration of SAE training and feature encoding.

A run's configuration (:class:`RunConfig`) nests one sub-config per component: the SAE
(:class:`SaeConfig`), the data provider (:class:`DataConfig`) and the trainer
(:class:`TrainerConfig`); each component receives only its own. Every field is declared once
(:mod:`sae_store.configbase`): ``sae-store train``/``encode`` options and the pipeline YAML's ``sae``
section come from these declarations. All of them round-trip through JSON with ``to_dict`` /
``from_dict``, which refuses unknown keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sae_store.configbase import Settings, seed_setting, setting
from sae_store.device import available_cores, device_setting
from sae_store.errors import ConfigError
from sae_store.roles import roles_setting
from sae_store.selection import languages_setting
from sae_store.train.architectures import ARCHITECTURES, architecture_names
from sae_store.units import format_size, parse_share, parse_size

BDecInit = Literal["mean", "zeros"]

#: One help text for ``--roles`` of ``train`` and ``encode`` (one flag in the YAML's ``sae`` section).
_ROLES_HELP = "token roles used: image, text, special or all (image,text)"
#: ``--seed`` of ``train`` sets the data's and the trainer's seed.
_SEED_HELP = "seed of initialisation, split and shuffling"


@dataclass(frozen=True)
class SaeConfig(Settings):
    """Shape and training objective of one sparse autoencoder."""

    architecture: str = setting(
        "topk", help="SAE architecture", flag="arch", metavar="ARCH", choices=architecture_names
    )
    """``topk`` (OpenAI, with AuxK), ``batchtopk`` (saved as JumpReLU for inference), ``relu``
    (Anthropic: L1 weighted by decoder norms), ``jumprelu`` (Gemma Scope: L0 with a
    straight-through estimator) or ``matryoshka_batchtopk`` (BatchTopK whose nested prefixes of
    latents each reconstruct the input; saved as JumpReLU); more register in
    :mod:`~sae_store.train.architectures`."""

    d_in: int = setting(
        0, help="input width (the store's hidden size); 0 until the data is known", ge=0, expose=False
    )

    expansion: int = setting(8, help="d_sae = expansion x hidden size", ge=1)

    d_sae: int = setting(0, help="number of latents (overrides --expansion); 0 = use --expansion", ge=0)

    k: int = setting(64, help="active latents per token (topk, batchtopk, matryoshka)", ge=1)
    """Active latents per token (topk) or on average per token (batchtopk)."""

    aux_k: int = setting(0, help="dead latents in the AuxK loss; 0 = hidden size / 2", ge=0)
    """Dead latents used by the AuxK loss; 0 means ``d_in // 2`` (OpenAI's heuristic)."""

    aux_k_coefficient: float = setting(1 / 32, help="weight of the AuxK loss", ge=0)
    """Weight of the AuxK loss relative to the reconstruction loss (OpenAI's alpha)."""

    decoder_init_norm: float = setting(
        0.0, help="decoder row norm at init (kept in training, folded to 1 on save); 0 = 1", ge=0
    )
    """Norm of every decoder row at initialisation (the encoder starts as its transpose); 0 means 1
    (for ``relu`` too: Anthropic's 0.1 gave FVU 0.75 instead of 0.49 in 300 steps). Norm-constrained
    architectures (all but ``relu``) keep the rows at this norm while training; the saved SAE has it
    folded into the encoder (unit-norm decoder rows, same reconstruction)."""

    matryoshka_widths: tuple[int, ...] = setting(
        (),
        help="matryoshka_batchtopk: nested widths ending at d_sae",
        ge=1,
        default_text="d_sae/16, /8, /4, /2, d_sae",
    )
    """matryoshka_batchtopk: widths of the nested dictionaries (increasing, the last one d_sae; as
    SAELens's ``matryoshka_widths``); each prefix of latents is trained to reconstruct the input on its
    own. Empty means d_sae/16, d_sae/8, d_sae/4, d_sae/2, d_sae."""

    l1_coefficient: float = setting(5.0, help="relu: L1 weight", ge=0)
    """relu: weight of the decoder-norm-weighted L1 penalty (inputs normalised to norm sqrt(d_in))."""

    l0_coefficient: float = setting(1.0, help="jumprelu: L0 weight", ge=0)

    sparsity_warmup_steps: int = setting(0, help="relu/jumprelu: sparsity warm-up steps", ge=0)
    """relu/jumprelu: the sparsity coefficient grows linearly from 0 over this many steps."""

    jumprelu_init_threshold: float = setting(0.01, help="jumprelu: initial threshold of every latent", gt=0)

    jumprelu_bandwidth: float = setting(
        0.05, help="jumprelu: width of the straight-through estimator's rectangle kernel", gt=0
    )

    batchtopk_threshold_lr: float = setting(
        0.01, help="batchtopk: rate of the running estimate of the inference threshold", gt=0
    )

    def check(self) -> None:
        w = self.matryoshka_widths
        if w and (list(w) != sorted(set(w)) or (self.d_in and w[-1] != self.n_latents)):
            raise self.rule_error(
                f"{{matryoshka_widths}} must be increasing positive integers ending at d_sae="
                f"{self.n_latents}, got {list(w)}"
            )
        if self.d_in and ARCHITECTURES[self.architecture].ranked and self.k > self.n_latents:
            raise self.rule_error(
                f"{{k}}={self.k} is larger than d_sae={self.n_latents}: a {self.architecture} SAE cannot "
                "keep more latents than it has; lower {k} or raise {expansion}"
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


def default_read_threads() -> int:
    """The cores this process may use, at most 8: more decoding threads than cores only contend."""
    return min(available_cores(), 8)


@dataclass(frozen=True)
class DataConfig(Settings):
    """What the data provider streams from the store and how it shuffles it."""

    layer: int = setting(help="decoder layer whose residual stream is used", ge=0, expose=False)

    languages: tuple[str, ...] | None = languages_setting("languages to mix into one shared SAE", "all")
    """Prompt languages to mix; None means every language of the store (one shared SAE per layer
    keeps feature indices comparable across languages)."""

    roles: tuple[str, ...] = roles_setting(_ROLES_HELP)
    """Token roles used (``image``, ``text``, ``special``); padding is never used."""

    batch_size: int = setting(4096, help="token vectors per step", ge=1)

    val_fraction: float = setting(0.1, help="fraction of samples held out for evaluation", ge=0, lt=1)
    """Fraction of samples (images, in every language) held out for evaluation."""

    device_memory: str = setting(
        "50%",
        help="memory of the training device for the layer's data: a share of what is free (50%), a size "
        "(40GiB) or 0; the layer is loaded there once when it fits, else read through --memory-budget",
        metavar="SIZE",
        parse=parse_share,
        what="a share of the free memory such as 50%, a size such as 40GiB, or 0",
    )
    """Memory of the training device (the host's RAM on CPU) the selected training vectors may take,
    in the store's precision (bf16: 2 bytes a value): a share of the device's free memory when the
    run starts, a size, or 0 (never). When they fit, they are decoded once, moved there and drawn as
    shuffled batches on the device (:mod:`~sae_store.train.resident`); otherwise the provider says so,
    with the sizes, and reads them through host memory under ``memory_budget``."""

    memory_budget: int = setting(
        2 * 1024**3,
        help="RAM for training data that does not fit --device-memory: loaded once if it fits, else streamed",
        metavar="SIZE",
        ge=1,
        parse=parse_size,
        show=format_size,
    )
    """Bytes of host memory the provider may hold when the data is not resident on the device. When
    the selected training data fits, it is loaded once and sampled in RAM; otherwise shard blocks
    stream through a shuffle buffer (two of them with prefetch) sized to fit."""

    prefetch: bool = setting(True, help="load the next shuffle buffer in a background thread")

    read_threads: int = setting(
        default_factory=default_read_threads,
        help="samples decoded at once when reading",
        metavar="N",
        ge=1,
        default_text="the cores, at most 8",
    )
    """Samples (one zarr chunk each) decoded concurrently when a shuffle buffer is filled; each
    thread holds one sample's chunk while decoding. Default: :func:`default_read_threads`."""

    norm_tokens: int = setting(100_000, help="token vectors used to estimate the input normalisation", ge=1)
    """Token vectors used to estimate the input normalisation (mean norm -> sqrt(d_in))."""

    max_eval_tokens: int = setting(100_000, help="held-out token vectors used for evaluation, at most", ge=1)

    seed: int = seed_setting(_SEED_HELP)
    """Seed of the train/validation split and of every shuffle."""


@dataclass(frozen=True)
class TrainerConfig(Settings):
    """Optimisation, logging and checkpointing of one training run."""

    steps: int = setting(2000, help="optimizer steps", ge=1)

    lr: float = setting(3e-4, help="peak Adam learning rate", gt=0)
    """Peak Adam learning rate (chosen by ``benchmarks/bench_train_quality.py``: with the dead window
    in tokens it meets the quality targets on both synthetic dictionaries, where 3e-3 leaves more
    latents dead)."""

    adam_betas: tuple[float, float] = setting((0.9, 0.999), help="Adam's beta1 and beta2", ge=0, lt=1)

    lr_warmup_steps: int | None = setting(
        None,
        help="linear lr warm-up from 0 (warm-up and decay together must fit in --steps)",
        ge=0,
        default_text="100, or a tenth of --steps when that is less",
    )

    lr_decay_fraction: float = setting(
        0.2, help="final fraction of the steps over which the lr decays linearly to 0", ge=0, le=1
    )

    grad_clip: float = setting(1.0, help="max gradient norm (0: no clipping)", ge=0)

    b_dec_init: BDecInit = setting(
        "mean", help="decoder bias at the start: the first batch's mean, or zeros (as SAELens)"
    )
    """How the decoder bias starts: ``mean``, the mean of the first training batch (as sparsify and
    OpenAI's TopK recipe start it; residual streams carry large constant channels, and from zero they
    hold nearly every latent dead), or ``zeros`` (SAELens's default)."""

    log_every: int = setting(
        50, help="steps between reads of the device: metrics records, progress and AuxK's dead latents", ge=1
    )
    """Steps between the trainer's reads of the device (the only times it waits for it): a metrics
    record (``metrics.jsonl``, progress) and a new list of dead latents for AuxK. It changes which
    latents AuxK sees, so a resumed run must keep it."""

    checkpoint_every: int = setting(500, help="steps between checkpoints (0: none)", ge=0)

    dead_window_tokens: int = setting(
        200_000, help="latents silent this many training tokens are dead (AuxK)", ge=1
    )
    """A latent that has not fired on this many training tokens is dead (reported, and fed to AuxK);
    counted in tokens so that it means the same at any batch size."""

    seed: int = seed_setting(_SEED_HELP)
    """Seed of the weight initialisation."""

    device: str = device_setting()

    autocast_bf16: bool = setting(False, help="on CUDA, the forward pass under bfloat16 autocast")
    """On CUDA, run the forward pass under bfloat16 autocast (weights, optimizer and losses stay
    float32). Ignored on CPU."""

    def check(self) -> None:
        if self.lr_warmup_steps is None:  # the documented default, made explicit (saved, compared on resume)
            object.__setattr__(self, "lr_warmup_steps", min(100, self.steps // 10))
        if self.warmup_steps + self.lr_decay_steps > self.steps:
            raise self.rule_error(
                f"the learning-rate schedule ({self.warmup_steps} warm-up steps + {self.lr_decay_steps} "
                f"decay steps) is longer than the run ({self.steps} steps); lower {{lr_warmup_steps}} or "
                "{lr_decay_fraction}, or raise {steps}"
            )

    @property
    def warmup_steps(self) -> int:
        """Steps of the linear warm-up (``lr_warmup_steps``, made explicit when the config is built)."""
        assert self.lr_warmup_steps is not None
        return self.lr_warmup_steps

    @property
    def lr_decay_steps(self) -> int:
        """Final steps over which the learning rate decays linearly to 0."""
        return int(self.lr_decay_fraction * self.steps)


#: Settings that may change when a run is resumed (they do not affect the result).
RESUMABLE_CHANGES = frozenset(
    {
        "trainer.checkpoint_every",
        "trainer.device",
        "data.read_threads",
        "data.prefetch",
        "data.device_memory",
        "data.memory_budget",
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
class EncodeConfig(Settings):
    """How ``sae-store encode`` turns activations into per-sample feature statistics."""

    roles: tuple[str, ...] = roles_setting(_ROLES_HELP)
    """Token roles whose latents are summarised (mean, max, fraction active) per sample."""

    batch_tokens: int = setting(8192, help="token vectors encoded at once", ge=1)
    """Token vectors encoded at once (bounds memory: batch_tokens x d_sae floats)."""

    device: str = device_setting()

    sae_memory: int = setting(
        4 * 1024**3,
        help="memory for SAEs held at once: consecutive layers are grouped to fit it, and each block's "
        "summaries are written once per group",
        metavar="SIZE",
        ge=1,
        parse=parse_size,
        show=format_size,
    )
    """Bytes of SAE weights held at once. Layers are encoded in groups whose SAEs fit, block by block,
    so each block's statistics file is rewritten once per group instead of once per layer."""
