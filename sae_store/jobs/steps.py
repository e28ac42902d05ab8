"""The pipeline's steps, defined once for local runs and SLURM submissions.

Each :class:`Step` says which ``sae-store`` sub-command it runs, how its options follow from the
:class:`~sae_store.jobs.config.PipelineConfig`, whether it is an array (over shard blocks of samples or
over layers), which steps it needs, and how to tell from its outputs that a task is complete.
Adding a step to the pipeline is one entry in :data:`STEPS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from sae_store.analyze.config import ClusterConfig
from sae_store.analyze.registry import ANALYSES
from sae_store.data.config import PrepareConfig
from sae_store.errors import ConfigError, StoreNotFoundError
from sae_store.evaluate.config import EvaluateConfig
from sae_store.extract.config import ExtractConfig
from sae_store.intervene.config import CaptionConfig, EditMode, InterventionConfig
from sae_store.jobs.config import PathName, PipelineConfig
from sae_store.models.config import ModelRunConfig
from sae_store.selection import format_ranges
from sae_store.settings_text import to_argv
from sae_store.store.config import StoreConfig
from sae_store.train.config import DataConfig, EncodeConfig, SaeConfig, TrainerConfig


class TaskId:
    """Placeholder in a step's arguments for the array task id (``$SLURM_ARRAY_TASK_ID`` in a job)."""

    def __repr__(self) -> str:
        return "TASK_ID"


TASK_ID = TaskId()
Arg = str | TaskId
ArrayKind = Literal["none", "blocks", "layers"]


def _never_done(cfg: PipelineConfig, task: int, n_tasks: int) -> bool:
    return False


def _always(cfg: PipelineConfig) -> bool:
    return True


@dataclass(frozen=True)
class Step:
    """One step of the pipeline."""

    name: str
    """Name used in job names, logs, status files and ``slurm.steps`` overrides."""
    description: str
    """What the step does, for people (shown in scripts and progress lines)."""
    command: tuple[str, ...]
    """The ``sae-store`` sub-command (and sub-sub-command) it runs."""
    args: Callable[[PipelineConfig], list[str]]
    """The command's arguments and options, from the config (array options are added from :attr:`array`)."""
    array: ArrayKind = "none"
    """``blocks``: array task ``i`` of ``n`` owns a contiguous run of shard blocks (``--task-index
    --task-count``); ``layers``: one task per layer, the task id is the layer (``--layer``)."""
    after: tuple[str, ...] = ()
    """Steps whose outputs this step reads."""
    done: Callable[[PipelineConfig, int, int], bool] = _never_done
    """``done(cfg, task, n_tasks)``: whether the outputs of one task are complete."""
    when: Callable[[PipelineConfig], bool] = _always
    """Whether the step belongs to this config's pipeline (e.g. demo inputs only with ``demo``)."""
    layers: Callable[[PipelineConfig], tuple[int, ...] | None] = lambda cfg: None
    """For a ``layers`` array: its layers (None: every layer of the run)."""

    def argv(self, cfg: PipelineConfig, n_tasks: int) -> list[Arg]:
        """The sub-command's words and arguments, with :data:`TASK_ID` where the task id goes."""
        extra: list[Arg] = []
        if self.array == "blocks":
            extra = ["--task-index", TASK_ID, "--task-count", str(n_tasks)]
        elif self.array == "layers":
            extra = ["--layer", TASK_ID]
        return [*self.command, *self.args(cfg), *extra]


# ---------------------------------------------------------------- completion checks and helpers


def _exists(name: PathName, file: str = "") -> Callable[..., bool]:
    def done(cfg: PipelineConfig, task: int, n_tasks: int) -> bool:
        return (cfg.paths.path(name) / file).exists()

    return done


def _samples_csv(cfg: PipelineConfig) -> str:
    return str(cfg.paths.path("prepared") / "samples.csv")


def _store_exists(cfg: PipelineConfig, task: int, n_tasks: int) -> bool:
    from sae_store.store import open_store

    try:
        open_store(cfg.paths.path("store"))
    except StoreNotFoundError:
        return False
    return True


def _blocks_done(group: str | None) -> Callable[[PipelineConfig, int, int], bool]:
    """Every (layer, language) of the task's shard blocks is flagged complete in the store's ``group``."""

    def done(cfg: PipelineConfig, task: int, n_tasks: int) -> bool:
        from sae_store.store import open_store, task_blocks

        try:
            store = open_store(cfg.paths.path("store"))
            flags = store.read_flags(group=group)
        except (FileNotFoundError, KeyError):
            return False
        blocks = task_blocks(store.blocks, task, n_tasks)
        return all(bool(flags[..., b.start : b.stop].all()) for b in blocks)

    return done


def _group_complete(group: str) -> Callable[[PipelineConfig, int, int], bool]:
    """Every completion flag of the store's ``group`` is set (False before the group exists)."""

    def done(cfg: PipelineConfig, task: int, n_tasks: int) -> bool:
        from sae_store.store import open_store

        try:
            store = open_store(cfg.paths.path("store"))
            return bool(store.read_flags(group=group).all())
        except (FileNotFoundError, KeyError):
            return False

    return done


def _init_args(cfg: PipelineConfig) -> list[str]:
    args = [
        str(cfg.paths.path("store")),
        "--samples", _samples_csv(cfg),
        "--model", str(cfg.paths.path("model")),
        "--images", str(cfg.paths.path("images")),
        *cfg.store.argv(StoreConfig),
    ]  # fmt: skip
    if cfg.layers is not None:
        args += ["--layers", format_ranges(cfg.layers)]
    if cfg.languages is not None:
        args += ["--languages", ",".join(cfg.languages)]
    for key, text in cfg.prompts.items():
        args += ["--prompt", f"{key}={text}"]
    return args


def _extract_args(cfg: PipelineConfig) -> list[str]:
    args = [str(cfg.paths.path("store")), "--model", str(cfg.paths.path("model"))]
    args += cfg.model.argv(ModelRunConfig, ExtractConfig)
    return args + (["--quota", cfg.quota] if cfg.quota else [])


def _caption_args(cfg: PipelineConfig) -> list[str]:
    store, model = str(cfg.paths.path("store")), str(cfg.paths.path("model"))
    return [store, "--model", model, *cfg.model.argv(ModelRunConfig, CaptionConfig),
            *cfg.interventions.argv(CaptionConfig)]  # fmt: skip


def _train_args(cfg: PipelineConfig) -> list[str]:
    args = [str(cfg.paths.path("store")), "--out", str(cfg.paths.path("saes")), "--resume"]
    return args + cfg.sae.argv(SaeConfig, DataConfig, TrainerConfig)


def _encode_args(cfg: PipelineConfig) -> list[str]:
    return [str(cfg.paths.path("store")), "--saes", str(cfg.paths.path("saes")), *cfg.sae.argv(EncodeConfig)]


def _analyze_args(cfg: PipelineConfig) -> list[str]:
    p = cfg.paths
    args = [str(p.path("store")), "--results", str(p.path("results")), "--saes", str(p.path("saes")),
            "--model", str(p.path("model"))]  # fmt: skip
    args += cfg.analysis.argv(*dict.fromkeys(a.config for a in ANALYSES), ClusterConfig)
    if cfg.analysis.cluster == "slurm":
        slurm = cfg.require_slurm()
        args += ["--slurm-queue", slurm.partition, "--slurm-walltime", slurm.resources("analyze").time or ""]
        args += ["--slurm-account", slurm.account] if slurm.account else []
    return args


def _intervene_args(mode: str) -> Callable[[PipelineConfig], list[str]]:
    def args(cfg: PipelineConfig) -> list[str]:
        p = cfg.paths
        fixed = [str(p.path("store")), "--saes", str(p.path("saes")), "--model", str(p.path("model")),
                 "--mode", mode, "--results", str(p.path("results"))]  # fmt: skip
        options = cfg.model.argv(ModelRunConfig, InterventionConfig) + cfg.interventions.argv(
            InterventionConfig
        )
        return fixed + options

    return args


def _intervention_done(mode: str) -> Callable[[PipelineConfig, int, int], bool]:
    def done(cfg: PipelineConfig, layer: int, n_tasks: int) -> bool:
        from sae_store.intervene.features import parse_feature_spec
        from sae_store.intervene.results import result_key

        key = result_key(parse_feature_spec(cfg.interventions.features).label, mode)
        return (cfg.paths.path("results") / "intervene" / f"{key}_layer_{layer}.json").exists()

    return done


def _mode_enabled(mode: str) -> Callable[[PipelineConfig], bool]:
    return lambda cfg: mode in cfg.interventions.modes


def _analyses_done(cfg: PipelineConfig, task: int, n_tasks: int) -> bool:
    """Every registered analysis has written its results (the last one in ``analyze all``'s order)."""
    return (cfg.paths.path("results") / list(ANALYSES)[-1].result_file).exists()


def _sae_trained(cfg: PipelineConfig, layer: int, n_tasks: int) -> bool:
    from sae_store.train.folder import is_trained, layer_folder

    return is_trained(layer_folder(cfg.paths.path("saes"), layer))


def _sae_sets(cfg: PipelineConfig) -> list[str]:
    """``evaluate``'s ``--saes`` values: the run's SAEs, the demo's pretrained-layout copy, the config's."""
    root = cfg.paths.run_dir
    sets = [str(cfg.paths.path("saes"))]
    if cfg.demo is not None:
        sets.append(f"pretrained-layout={root / cfg.demo.pretrained_layout}")
    for spec in cfg.evaluate.saes:
        name, sep, path = spec.partition("=") if "=" in spec.split("/")[0] else ("", "", spec)
        sets.append(f"{name}{sep}{root / path}")
    return sets


def _evaluate_args(cfg: PipelineConfig) -> list[str]:
    p = cfg.paths
    args = [str(p.path("store")), *(w for s in _sae_sets(cfg) for w in ("--saes", s)),
            "--model", str(p.path("model")), "--results", str(p.path("results"))]  # fmt: skip
    split = {k: cfg.sae.values[k] for k in ("val_fraction", "seed") if k in cfg.sae.values}
    return (
        args
        + cfg.model.argv(ModelRunConfig, EvaluateConfig)
        + to_argv(split, [EvaluateConfig])
        + (cfg.evaluate.argv(EvaluateConfig))
    )


def _evaluated(cfg: PipelineConfig, layer: int, n_tasks: int) -> bool:
    from sae_store.evaluate.run import layer_complete
    from sae_store.store import open_store

    return layer_complete(open_store(cfg.paths.path("store")), _sae_sets(cfg), layer)


def _export_args(cfg: PipelineConfig) -> list[str]:
    assert cfg.demo is not None
    out = cfg.paths.run_dir / cfg.demo.pretrained_layout
    return ["--saes", str(cfg.paths.path("saes")), "--layout", "sparsify", "--out", str(out), "--no-progress"]


def _exported(cfg: PipelineConfig, task: int, n_tasks: int) -> bool:
    """The demo's pretrained-layout copy has every layer the run's SAE folder has."""
    from sae_store.train.discovery import find_saes

    assert cfg.demo is not None
    trained = find_saes(cfg.paths.path("saes"), required=False)
    return bool(trained) and set(trained) <= set(
        find_saes(cfg.paths.run_dir / cfg.demo.pretrained_layout, required=False)
    )


def _report_args(cfg: PipelineConfig) -> list[str]:
    p = cfg.paths
    args = [str(p.path("store")), "--out", str(p.path("report")), "--saes", str(p.path("saes")),
            "--results", str(p.path("results"))]  # fmt: skip
    return args + (["--quota", cfg.quota] if cfg.quota else [])


def _prepare_args(cfg: PipelineConfig) -> list[str]:
    return [
        "--captions", str(cfg.paths.path("captions")),
        "--images", str(cfg.paths.path("images")),
        "--out", str(cfg.paths.path("prepared")),
        *cfg.samples.argv(PrepareConfig),
    ]  # fmt: skip


def _demo(cfg: PipelineConfig) -> bool:
    return cfg.demo is not None


def _demo_data_args(cfg: PipelineConfig) -> list[str]:
    assert cfg.demo is not None
    return [
        str(cfg.paths.path("captions").parent),
        "--n-images",
        str(cfg.demo.n_images),
        "--seed",
        str(cfg.demo.seed),
    ]


def _tiny_model_args(cfg: PipelineConfig) -> list[str]:
    assert cfg.demo is not None
    d = cfg.demo
    return [str(cfg.paths.path("model")), "--n-layers", str(d.model_layers), "--hidden", str(d.model_hidden),
            "--seed", str(d.model_seed)]  # fmt: skip


#: The pipeline, in the order steps run locally and are submitted.
STEPS: tuple[Step, ...] = (
    Step("demo-data", "demo captions and images", ("make-demo-data",), _demo_data_args,
         done=_exists("captions"), when=_demo),
    Step("tiny-model", "a tiny random Gemma 3 model", ("make-tiny-model",), _tiny_model_args,
         done=_exists("model", "config.json"), when=_demo),
    Step("prepare", "gender-labelled samples table", ("prepare",), _prepare_args, after=("demo-data",),
         done=lambda cfg, t, n: (cfg.paths.path("prepared") / "samples.csv").exists()),
    Step("init", "create the activation store", ("init",), _init_args, after=("prepare", "tiny-model"),
         done=_store_exists),
    Step("extract", "activations of every layer and language, by shard blocks", ("extract",), _extract_args,
         array="blocks", after=("init",), done=_blocks_done(None)),
    Step("caption", "the model's own captions with gender-term counts", ("caption",), _caption_args,
         after=("init",), done=_group_complete("generation")),
    Step("train", "one SAE per layer, streamed from the store", ("train",), _train_args,
         array="layers", after=("extract",), done=_sae_trained),
    Step("encode", "per-sample SAE feature summaries into the store", ("encode",), _encode_args,
         array="blocks", after=("train",), done=_blocks_done("features")),
    Step("export-saes", "the demo's SAEs again in a pretrained (sparsify) layout", ("export-saes",),
         _export_args, after=("train",), when=_demo, done=_exported),
    Step("evaluate", "SAE sets compared per layer: reconstruction, behaviour, probes", ("evaluate",),
         _evaluate_args, array="layers", after=("train", "export-saes"), done=_evaluated,
         layers=lambda cfg: cfg.evaluate.layers),
    Step("analyze", "bias statistics, cross-lingual, cross-layer, interpretation", ("analyze", "all"),
         _analyze_args, after=("encode",), done=_analyses_done),
    *(Step(f"intervene-{mode}", f"{mode} SAE features inside the running model", ("intervene",),
           _intervene_args(mode), array="layers", after=("analyze", "caption"), done=_intervention_done(mode),
           when=_mode_enabled(mode),
           layers=lambda cfg: cfg.interventions.layers) for mode in get_args(EditMode)),
    Step("intervene-summary", "cross-layer intervention summary", ("intervene-summary",),
         lambda cfg: [str(cfg.paths.path("results"))],
         after=tuple(f"intervene-{m}" for m in get_args(EditMode)),
         done=_exists("results", "cross_layer_results.json"), when=lambda cfg: bool(cfg.interventions.modes)),
    Step("report", "HTML and Markdown report of everything the run produced", ("report",), _report_args,
         after=("analyze", "intervene-summary", "caption", "evaluate"),
         done=_exists("report", "summary.json")),
)  # fmt: skip


def ancestors(name: str) -> set[str]:
    """Every step that ``name`` reads from, directly or through other steps."""
    by_name = {s.name: s for s in STEPS}
    todo, seen = list(by_name[name].after), set()
    while todo:
        dep = todo.pop()
        if dep in by_name and dep not in seen:
            seen.add(dep)
            todo.extend(by_name[dep].after)
    return seen


def step_names() -> list[str]:
    return [s.name for s in STEPS]


def get_step(name: str) -> Step:
    for s in STEPS:
        if s.name == name:
            return s
    raise ConfigError(f"unknown step {name!r}; the pipeline's steps are {step_names()}")
