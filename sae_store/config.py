"""The pipeline's typed configuration: one YAML file drives local runs and SLURM submissions.

:class:`PipelineConfig` composes one sub-config per capability: paths, samples, model, store
encoding (:class:`~sae_store.store.config.StoreConfig`), SAEs, analyses, interventions, demo inputs
and SLURM. Every section refuses unknown keys (naming the allowed ones) and validates its values when
it is built, so a bad config fails at load time, before anything is submitted. Values left null
keep the defaults of the command they are passed to.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from sae_store.errors import ConfigError, shown_value
from sae_store.resources import resource_dir
from sae_store.store.config import StoreConfig

#: The demo pipeline's config (``sae-store demo`` runs it with ``paths.root`` set to its ``--out``).
DEMO_CONFIG = resource_dir("configs") / "demo.yaml"

PathName = Literal["captions", "images", "prepared", "model", "store", "saes", "results", "report"]
MailType = Literal[
    "NONE", "BEGIN", "END", "FAIL", "REQUEUE", "ALL", "INVALID_DEPEND", "STAGE_OUT",
    "TIME_LIMIT", "TIME_LIMIT_90", "TIME_LIMIT_80", "TIME_LIMIT_50", "ARRAY_TASKS",
]  # fmt: skip

_TIME_RE = re.compile(r"^(?:(\d+)-(\d+)(?::(\d+)(?::(\d+))?)?|(\d+)(?::(\d+)(?::(\d+))?)?)$")
_MEMORY_RE = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
_TIME_FORMATS = "MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (e.g. '02:00:00' or '1-12:00:00')"


def parse_slurm_time(text: str, *, name: str = "time") -> int:
    """Seconds of a SLURM time limit (``--time`` syntax), raising ConfigError for other formats."""
    m = _TIME_RE.match(text) if isinstance(text, str) else None
    if m is None:
        raise ConfigError(f"{name} must be a SLURM time limit in one of {_TIME_FORMATS}; got {text!r}")
    if m.group(1) is not None:  # days-hours[:minutes[:seconds]]
        days, hours, minutes, seconds = (int(g or 0) for g in m.group(1, 2, 3, 4))
        bad = hours > 23 or minutes > 59 or seconds > 59
    else:  # minutes, minutes:seconds or hours:minutes:seconds
        parts = [int(g) for g in m.group(5, 6, 7) if g is not None]
        days, hours = 0, 0
        if len(parts) == 3:
            hours, minutes, seconds = parts
            bad = minutes > 59 or seconds > 59
        else:
            minutes, seconds = (*parts, 0)[:2]
            bad = seconds > 59
    if bad:
        raise ConfigError(f"{name} {text!r} has a field out of range; use {_TIME_FORMATS}")
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


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
        raise ConfigError(f"{name} must be layer indices ({_LAYER_SYNTAX}), got {shown}")
    items = [str(x) for x in spec] if isinstance(spec, list | tuple) else str(spec).split(",")
    layers: list[int] = []
    for item in items:
        m = _LAYER_ITEM.match(item)
        if not m:
            raise ConfigError(f"{name} {shown}: cannot read {shown_value(item.strip())}; use {_LAYER_SYNTAX}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ConfigError(
                f"{name} {shown}: range {item.strip()!r} runs backwards; write it as '{hi}-{lo}'"
            )
        layers.extend(range(lo, hi + 1))
    twice = sorted(layer for layer, n in Counter(layers).items() if n > 1)
    if twice:
        raise ConfigError(f"{name} {shown} names layer(s) {twice} more than once; give each layer once")
    return tuple(sorted(layers))


def _check_line(name: str, value: str | None) -> None:
    # Values end up on #SBATCH lines and in shell scripts: a newline would start a new script line.
    if value is not None and any(ord(c) < 32 or c == "\x7f" for c in value):
        raise ConfigError(f"{name} must be a single line without control characters, got {value!r}")


@dataclass(frozen=True)
class PathsConfig:
    """Where inputs and outputs live. Relative paths are relative to :attr:`root`."""

    root: str = ""
    """Folder of the run: job scripts, logs and ``pipeline_status/`` go here. Required; a relative
    root is taken relative to the current directory when the config is loaded."""
    captions: str = "data/captions.csv"
    """Bilingual captions CSV (``image, en_caption, ar_caption``)."""
    images: str = "data/images"
    """Folder the CSV's image paths are relative to."""
    prepared: str = "data/prepared"
    """Folder where ``prepare`` writes ``samples.csv`` and its report."""
    model: str = "model"
    """Local model folder (e.g. a download of google/gemma-3-4b-it)."""
    store: str = "store.zarr"
    """The activation store."""
    saes: str = "saes"
    """Folder of the trained SAEs (one sub-folder per layer)."""
    results: str = "results"
    """Folder of analysis results (JSON)."""
    report: str = "report"
    """Folder of the report."""

    def __post_init__(self) -> None:
        if not self.root:
            raise ConfigError("paths.root is required: the folder of the run (scripts, logs, outputs)")
        for f in fields(self):
            _check_line(f"paths.{f.name}", getattr(self, f.name))

    def path(self, name: PathName) -> Path:
        """The absolute path of ``name`` (resolved against :attr:`root`)."""
        return Path(self.root).expanduser() / Path(getattr(self, name)).expanduser()

    @property
    def run_dir(self) -> Path:
        return Path(self.root).expanduser()


@dataclass(frozen=True)
class SamplesConfig:
    """How ``prepare`` selects samples from the captions."""

    num_samples: int | None = None
    """Keep this many images, stratified by gender (all usable images when null)."""
    seed: int = 0
    """Seed of the subsample."""

    def __post_init__(self) -> None:
        if self.num_samples is not None and self.num_samples < 1:
            raise ConfigError(
                f"samples.num_samples must be a positive integer or null, got {self.num_samples!r}"
            )


@dataclass(frozen=True)
class ModelSettings:
    """How the steps that run the model (extraction, captions, interventions) run it.

    Null values leave the command's own default (shown by ``sae-store extract --help``).
    """

    device: str | None = None
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    dtype: str | None = None
    """``auto`` (bfloat16 on GPU, float32 on CPU), ``bfloat16`` or ``float32``."""
    batch_size: int | None = None
    """Samples per forward pass."""
    writer_threads: int | None = None
    """Threads encoding activations during extraction (null: the cores left after the model)."""

    def __post_init__(self) -> None:
        _check_positive(self, ("batch_size", "writer_threads"), "model")
        _check_line("model.device", self.device)
        _check_line("model.dtype", self.dtype)


@dataclass(frozen=True)
class SaeSettings:
    """SAE training and encoding (``sae-store train`` / ``encode``); null keeps the command's default
    (``sae-store train --help`` lists them)."""

    arch: Literal["topk", "batchtopk", "relu", "jumprelu", "matryoshka_batchtopk"] | None = None
    k: int | None = None
    """Active latents per token (topk, batchtopk, matryoshka_batchtopk)."""
    expansion: int | None = None
    """d_sae = expansion x hidden size."""
    d_sae: int | None = None
    """Number of latents (overrides ``expansion``)."""
    matryoshka_widths: tuple[int, ...] | None = None
    """matryoshka_batchtopk: nested widths, the last one d_sae."""
    steps: int | None = None
    """Optimizer steps per layer."""
    batch_size: int | None = None
    """Token vectors per step."""
    lr: float | None = None
    """Peak Adam learning rate."""
    lr_warmup_steps: int | None = None
    lr_decay_fraction: float | None = None
    """Final fraction of the steps over which the learning rate decays to 0."""
    grad_clip: float | None = None
    """Maximum gradient norm (0: no clipping)."""
    b_dec_init: Literal["mean", "zeros"] | None = None
    """Decoder bias at the start: ``mean`` (of the first batch) or ``zeros``."""
    decoder_init_norm: float | None = None
    aux_k: int | None = None
    """Dead latents in the AuxK loss (0: hidden size / 2)."""
    aux_k_coefficient: float | None = None
    dead_window_tokens: int | None = None
    """A latent silent for this many training tokens is dead (fed to AuxK, reported)."""
    l1_coefficient: float | None = None
    l0_coefficient: float | None = None
    sparsity_warmup_steps: int | None = None
    autocast_bf16: bool | None = None
    """On CUDA, the forward pass under bfloat16 autocast."""
    roles: str | None = None
    """Token roles trained on and summarised, e.g. ``image,text``."""
    seed: int | None = None
    device: str | None = None
    """Torch device of training and encoding (``auto``, ``cpu``, ``cuda``)."""

    def __post_init__(self) -> None:
        _check_positive(self, ("k", "expansion", "d_sae", "steps", "batch_size", "dead_window_tokens"), "sae")
        _check_line("sae.roles", self.roles)
        _check_line("sae.device", self.device)


@dataclass(frozen=True)
class AnalysisSettings:
    """``sae-store analyze all``; null keeps the command's default."""

    cluster: Literal["local", "slurm", "none"] | None = None
    """Where dask runs the analyses; ``slurm`` starts worker jobs with the ``slurm`` section's
    partition and account, the scheduler bound to ``slurm.scheduler_host``."""
    workers: int | None = None
    worker_memory: str | None = None
    """Memory per dask worker, e.g. ``4GiB``."""
    alpha: float | None = None
    """False discovery rate of the bias tests."""
    permutations: int | None = None
    bootstrap: int | None = None
    min_per_group: int | None = None
    seed: int | None = None
    n_features: int | None = None
    """Most biased features per direction inspected by ``interpret``, ``visual`` and ``qualitative``."""
    top_samples: int | None = None
    """Samples shown per inspected feature (``interpret``, ``visual``)."""

    def __post_init__(self) -> None:
        _check_positive(self, ("workers", "n_features", "top_samples"), "analysis")
        _check_line("analysis.worker_memory", self.worker_memory)
        if self.alpha is not None and not 0 < self.alpha < 1:
            raise ConfigError(f"analysis.alpha must be in (0, 1), got {self.alpha!r}")


InterventionMode = Literal["ablate", "amplify", "neutralise"]


@dataclass(frozen=True)
class InterventionSettings:
    """Captions and interventions (``sae-store caption`` / ``intervene``); null keeps the defaults."""

    modes: tuple[InterventionMode, ...] = ("ablate", "amplify", "neutralise")
    """One array job over layers per mode."""
    layers: tuple[int, ...] | None = None
    """Layers to intervene at (null: every layer of the run)."""
    features: str = "top-male:20"
    """Feature set: ``top-male:N``, ``top-female:N`` or ``i,j,k``."""
    alpha: float | None = None
    """Amplification factor."""
    controls: int | None = None
    """Random control feature sets (0 or >= 10)."""
    max_samples: int | None = None
    bootstrap: int | None = None
    """Bootstrap resamples of the confidence intervals (``intervene --bootstrap``)."""
    max_new_tokens: int | None = None
    """Length limit of the baseline captions (``caption``) and regenerated ones (``intervene``)."""
    seed: int | None = None

    def __post_init__(self) -> None:
        _check_positive(self, ("max_samples", "bootstrap", "max_new_tokens"), "interventions")
        _check_line("interventions.features", self.features)


def _check_positive(section: object, names: tuple[str, ...], where: str) -> None:
    for name in names:
        value = getattr(section, name)
        if value is not None and value < 1:
            raise ConfigError(f"{where}.{name} must be a positive integer or null, got {value!r}")


@dataclass(frozen=True)
class DemoConfig:
    """Build demo inputs (captions, images, a tiny random Gemma 3) before the pipeline proper."""

    n_images: int = 48
    """Images written by ``make-demo-data``."""
    seed: int = 0
    """Seed of the demo data."""
    model_layers: int = 4
    """Decoder layers of the tiny model."""
    model_hidden: int = 64
    """Residual stream width of the tiny model."""
    model_seed: int = 0
    """Seed of the tiny model's weights."""

    def __post_init__(self) -> None:
        for name in ("n_images", "model_layers", "model_hidden"):
            if getattr(self, name) < 1:
                raise ConfigError(f"demo.{name} must be a positive integer, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class StepResources:
    """Per-step overrides of the SLURM defaults; null keeps the default of the ``slurm`` section."""

    partition: str | None = None
    cpus: int | None = None
    memory: str | None = None
    """``--mem``, e.g. ``16G``."""
    time: str | None = None
    """``--time``, e.g. ``02:00:00``."""
    gres: str | None = None
    """``--gres``, e.g. ``gpu:1``."""
    tasks: int | None = None
    """Array tasks of a step that splits samples into shard blocks (extraction, encoding)."""
    extra_directives: tuple[str, ...] = ()
    """More sbatch options for this step only, e.g. ``--constraint=a100``."""


def _check_resources(r: StepResources | SlurmConfig, where: str) -> None:
    for name in ("partition", "memory", "time", "gres"):
        _check_line(f"{where}.{name}", getattr(r, name))
    if r.memory is not None and not _MEMORY_RE.match(r.memory):
        raise ConfigError(
            f"{where}.memory must be a size like '4G', '500M' or '16000' (MB), got {r.memory!r}"
        )
    if r.time is not None:
        parse_slurm_time(r.time, name=f"{where}.time")
    for name in ("cpus", "tasks"):
        value = getattr(r, name, None)
        if value is not None and value < 1:
            raise ConfigError(f"{where}.{name} must be a positive integer, got {value!r}")
    for d in r.extra_directives:
        _check_line(f"{where}.extra_directives", d)
        if not d.startswith("-"):
            raise ConfigError(
                f"{where}.extra_directives holds sbatch options like '--constraint=a100', got {d!r}"
            )


@dataclass(frozen=True)
class SlurmConfig:
    """How steps are submitted to SLURM: ``#SBATCH`` defaults, per-step overrides, job set-up."""

    partition: str = ""
    """Partition to submit to (required; ``sinfo -s`` lists them)."""
    account: str | None = None
    qos: str | None = None
    cpus: int = 1
    """``--cpus-per-task`` of every step unless overridden in :attr:`steps`."""
    memory: str = "4G"
    """``--mem`` of every step unless overridden."""
    time: str = "01:00:00"
    """``--time`` of every step unless overridden."""
    gres: str | None = None
    """``--gres`` of every step unless overridden (e.g. ``gpu:1``)."""
    tasks: int = 4
    """Array tasks of the steps that split samples into shard blocks, unless overridden per step."""
    array_limit: int | None = None
    """At most this many tasks of one array run at once (``--array=...%N``)."""
    mail_user: str | None = None
    mail_types: tuple[MailType, ...] = ()
    """``--mail-type`` values, e.g. ``[END, FAIL]``."""
    setup: tuple[str, ...] = ()
    """Shell lines run before each step, e.g. ``module load cuda/12.4`` or ``source ~/venv/bin/activate``."""
    extra_directives: tuple[str, ...] = ()
    """More sbatch options for every step, e.g. ``--constraint=a100``."""
    executable: str | None = None
    """Command that runs sae-store inside jobs (e.g. ``sae-store`` after :attr:`setup`); default: the
    Python interpreter that submits, as ``python -m sae_store_cli``."""
    scheduler_host: str | None = None
    """Address the dask scheduler of ``analyze --cluster slurm`` binds to (the node's address)."""
    job_name_prefix: str = "sae"
    """Jobs are named ``<prefix>-<step>``."""
    steps: dict[str, StepResources] = field(default_factory=dict)
    """Per-step overrides, keyed by step name (e.g. ``extract: {gres: 'gpu:1', tasks: 8}``)."""

    def __post_init__(self) -> None:
        if not self.partition:
            raise ConfigError(
                "slurm.partition is required: the partition to submit to (`sinfo -s` lists them), "
                "e.g. `partition: gpu`"
            )
        _check_resources(self, "slurm")
        for step, resources in self.steps.items():
            _check_resources(resources, f"slurm.steps.{step}")
        for name in ("account", "qos", "mail_user", "executable", "scheduler_host", "job_name_prefix"):
            _check_line(f"slurm.{name}", getattr(self, name))
        for line in self.setup:
            _check_line("slurm.setup", line)
        if self.array_limit is not None and self.array_limit < 1:
            raise ConfigError(
                f"slurm.array_limit must be a positive integer or null, got {self.array_limit!r}"
            )
        if self.mail_user and not self.mail_types:
            raise ConfigError(
                f"slurm.mail_user is {self.mail_user!r} but mail_types is empty, so no mail would be "
                "sent; add e.g. `mail_types: [END, FAIL]`"
            )

    def resources(self, step: str) -> StepResources:
        """The resources of ``step``: its overrides on top of this section's defaults."""
        own = self.steps.get(step, StepResources())
        return StepResources(
            partition=own.partition or self.partition,
            cpus=own.cpus or self.cpus,
            memory=own.memory or self.memory,
            time=own.time or self.time,
            gres=own.gres or self.gres,
            tasks=own.tasks or self.tasks,
            extra_directives=self.extra_directives + own.extra_directives,
        )


@dataclass(frozen=True)
class PipelineConfig:
    """Everything one run of the pipeline needs, locally or on SLURM."""

    paths: PathsConfig
    layers: tuple[int, ...] | None = None
    """Decoder layers to store and analyse (null: all layers of the model)."""
    languages: tuple[str, ...] | None = None
    """Prompt languages (null: every language with a prompt, i.e. ``en`` and ``ar``)."""
    skip: tuple[str, ...] = ()
    """Steps to leave out of the pipeline (e.g. ``[caption, intervene]``); later steps still run."""
    prompts: dict[str, str] = field(default_factory=dict)
    """Prompt per language key replacing or adding to the study's defaults (``init --prompt``)."""
    quota: str | None = None
    """Byte quota of the store's filesystem area (e.g. ``500G``): extraction refuses to outgrow it."""
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    model: ModelSettings = field(default_factory=ModelSettings)
    store: StoreConfig = field(default_factory=StoreConfig)
    sae: SaeSettings = field(default_factory=SaeSettings)
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    interventions: InterventionSettings = field(default_factory=InterventionSettings)
    demo: DemoConfig | None = None
    """When set, the run first builds demo captions, images and a tiny model into its paths."""
    slurm: SlurmConfig | None = None
    """Needed by ``sae-store jobs``; local ``pipeline`` runs ignore it."""

    def __post_init__(self) -> None:
        if self.layers is not None and (not self.layers or min(self.layers) < 0):
            raise ConfigError(
                f"layers must be a non-empty list of layer indices >= 0 or null, got {self.layers!r}"
            )
        if self.languages is not None and not self.languages:
            raise ConfigError("languages must be a non-empty list (e.g. [en, ar]) or null for all")
        for key, text in self.prompts.items():
            _check_line(f"prompts.{key}", text)
        _check_line("quota", self.quota)
        if self.demo is not None:
            from sae_store.data.demo import DEMO_CAPTIONS_FILE, DEMO_IMAGES_DIR

            captions, images = self.paths.path("captions"), self.paths.path("images")
            if captions.name != DEMO_CAPTIONS_FILE or images != captions.parent / DEMO_IMAGES_DIR:
                raise ConfigError(
                    f"with a demo section, paths.captions must be DIR/{DEMO_CAPTIONS_FILE} and paths.images "
                    f"DIR/{DEMO_IMAGES_DIR} (where make-demo-data writes them); got {self.paths.captions!r} "
                    f"and {self.paths.images!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts and lists (YAML/JSON-ready); :func:`config_from_dict` reads it back."""
        return _plain(asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def require_slurm(self) -> SlurmConfig:
        """The ``slurm`` section, or a ConfigError saying it is needed."""
        if self.slurm is None:
            raise ConfigError("the config has no `slurm` section; add one with at least `partition: NAME`")
        return self.slurm


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def config_from_dict(data: Any, *, root: str | Path | None = None) -> PipelineConfig:
    """Build a :class:`PipelineConfig` from plain data, checking keys and types section by section.

    ``root`` replaces ``paths.root``. Environment variables in paths (``$SCRATCH``) are expanded and a
    relative root is made absolute against the current directory.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"a pipeline config must be a mapping of sections, got {type(data).__name__}")
    data = dict(data)
    paths = {
        k: os.path.expandvars(v) if isinstance(v, str) else v for k, v in (data.get("paths") or {}).items()
    }
    if root is not None:
        paths["root"] = str(root)
    if paths.get("root"):
        paths["root"] = str(Path(str(paths["root"])).expanduser().absolute())
    data["paths"] = paths
    cfg: PipelineConfig = _build(PipelineConfig, data, "")
    return cfg


def load_config(path: str | Path, *, root: str | Path | None = None) -> PipelineConfig:
    """Read a YAML pipeline config (see ``configs/*.yaml``); ``root`` overrides ``paths.root``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"config file {str(path)!r} does not exist; `sae-store jobs example gemma3-4b --out FILE` "
            "writes an example to start from"
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from e
    return config_from_dict(data or {}, root=root)


#: What ``sae-store demo --quick`` changes in the demo config: two layers, short SAE training, no
#: captions, interventions or permutations; a check that an installation works end to end (~1 min).
DEMO_QUICK: dict[str, Any] = {
    "layers": "0,2",
    "skip": ["caption", "intervene-ablate", "intervene-amplify", "intervene-neutralise", "intervene-summary"],
    "sae": {"steps": 40},
    "analysis": {"bootstrap": 20, "permutations": 0},
}


def demo_config(root: str | Path, *, quick: bool = False) -> PipelineConfig:
    """The demo pipeline rooted at ``root``; ``quick`` applies :data:`DEMO_QUICK`."""
    data = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    if quick:
        for key, value in DEMO_QUICK.items():
            data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return config_from_dict(data, root=root)


def _build(cls: type, data: Any, path: str) -> Any:
    # Generic dataclass construction from YAML data: unknown keys named with the allowed ones, each
    # value converted to (and checked against) the field's annotated type, then __post_init__ runs.
    # ``path`` is the section's dotted name ("" for the top level).
    where = f"section {path!r}" if path else "the config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {data!r}")
    known = [f.name for f in fields(cls)]
    unknown = sorted(str(k) for k in set(data) - set(known))
    if unknown:
        hints = [m for k in unknown for m in difflib.get_close_matches(k, known, n=1)]
        hint = f" (did you mean {', '.join(repr(h) for h in hints)}?)" if hints else ""
        raise ConfigError(f"unknown key(s) {unknown} in {where}{hint}; allowed: {known}")
    types_ = get_type_hints(cls)
    kwargs = {k: _convert(types_[k], v, f"{path}.{k}" if path else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field without a value
        raise ConfigError(f"{where}: {e}") from e


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, where)
    if is_dataclass(tp):
        return _build(tp, value, where)  # type: ignore[arg-type]
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple and args[0] is int and where.split(".")[-1] == "layers":
        return parse_layer_spec(value, name=where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        raise ConfigError(f"{where} must be of type {tp.__name__}, got {value!r}")
    return value
