"""The pipeline's typed configuration: one YAML file drives local runs and SLURM submissions.

:class:`PipelineConfig` has the run's paths and selection, one section per group of commands whose
keys are those commands' own settings (``samples``, ``store``, ``model``, ``sae``, ``analysis``,
``interventions``: see :data:`SECTIONS`), demo inputs and SLURM. A key means the same as the option of
the same name (``sae.arch`` is ``train --arch``) and is checked by the same declaration when the config
is loaded, so a bad config fails before anything is submitted; keys left out keep the commands'
defaults (``sae-store jobs example NAME`` lists every key with its default).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, Literal

import yaml

from sae_store.analyze.config import ClusterConfig
from sae_store.analyze.registry import ANALYSES
from sae_store.autointerp.config import ExplainConfig
from sae_store.configbase import Settings, seed_setting, setting, unknown_keys
from sae_store.data.config import DEMO_IMAGES, PrepareConfig
from sae_store.errors import ConfigError
from sae_store.evaluate.config import EvaluateConfig
from sae_store.extract.config import ExtractConfig
from sae_store.intervene.config import EDIT_MODE_ALIASES, CaptionConfig, EditMode, InterventionConfig
from sae_store.jobs.sections import Binding, Section, parse_section, section_fields
from sae_store.jobs.slurm_config import SlurmConfig
from sae_store.models.config import TINY_HIDDEN, TINY_LAYERS, ModelRunConfig, tiny_hidden_problem
from sae_store.resources import resource_dir
from sae_store.selection import languages_setting, layers_setting
from sae_store.store.config import StoreConfig
from sae_store.train.config import DataConfig, EncodeConfig, SaeConfig, TrainerConfig

#: The demo pipeline's config (``sae-store demo`` runs it with ``paths.root`` set to its ``--out``).
DEMO_CONFIG = resource_dir("configs") / "demo.yaml"

PathName = Literal["captions", "images", "prepared", "model", "store", "saes", "results", "report"]


@dataclass(frozen=True)
class PathsConfig(Settings):
    """Where inputs and outputs live. Relative paths are relative to :attr:`root`."""

    root: str = setting(
        "", help="folder of the run: job scripts, logs and pipeline_status/ go here (required)"
    )
    captions: str = setting(
        "data/captions.csv", help="bilingual captions CSV (image, en_caption, ar_caption)"
    )
    images: str = setting("data/images", help="folder the CSV's image paths are relative to")
    prepared: str = setting("data/prepared", help="folder where `prepare` writes samples.csv and its report")
    model: str = setting("model", help="local model folder (e.g. a download of google/gemma-3-4b-it)")
    store: str = setting("store.zarr", help="the activation store")
    saes: str = setting("saes", help="folder of the trained SAEs (one sub-folder per layer)")
    results: str = setting("results", help="folder of analysis results (JSON)")
    report: str = setting("report", help="folder of the report")

    def check(self) -> None:
        if not self.root:
            raise self.rule_error("{root} is required: the folder of the run (scripts, logs, outputs)")

    def path(self, name: PathName) -> Path:
        """The absolute path of ``name`` (resolved against :attr:`root`)."""
        return Path(self.root).expanduser() / Path(getattr(self, name)).expanduser()

    @property
    def run_dir(self) -> Path:
        return Path(self.root).expanduser()


@dataclass(frozen=True)
class DemoConfig(Settings):
    """Build demo inputs (captions, images, a tiny random Gemma 3) before the pipeline proper."""

    n_images: int = setting(**DEMO_IMAGES)
    seed: int = seed_setting("seed of the demo data")
    model_layers: int = setting(**TINY_LAYERS)
    model_hidden: int = setting(**TINY_HIDDEN)
    model_seed: int = seed_setting("seed of the tiny model's weights")
    pretrained_layout: str = setting(
        "saes-sparsify",
        help="folder (under the root) where the demo writes its SAEs again in sparsify's layout, evaluated "
        "beside them",
    )

    def check(self) -> None:
        problem = tiny_hidden_problem(self.model_hidden)
        if problem:
            raise self.rule_error(problem.replace("{hidden_size}", "{model_hidden}"))


@dataclass(frozen=True)
class InterventionPlan(Settings):
    """Which intervention experiments the pipeline runs (the ``interventions`` section's own keys)."""

    modes: tuple[EditMode, ...] = setting(
        ("ablate", "amplify", "neutralise"),
        help="one array job over layers per mode",
        aliases=EDIT_MODE_ALIASES,
    )
    layers: tuple[int, ...] | None = layers_setting("layers to intervene at", "every layer of the run")


@dataclass(frozen=True)
class EvaluatePlan(Settings):
    """Which SAE sets the pipeline's ``evaluate`` compares (the ``evaluate`` section's own keys)."""

    saes: tuple[str, ...] = setting(
        (), help="more SAE sets compared with the run's own (NAME=DIR or a {L} pattern, relative to the root)"
    )
    layers: tuple[int, ...] | None = layers_setting("layers to evaluate", "every layer of the run")


def _analysis_bindings() -> tuple[Binding, ...]:
    configs = dict.fromkeys(a.config for a in ANALYSES)
    return (*(Binding(c) for c in configs), Binding(ClusterConfig))


#: Each settings section of the YAML and the config classes whose fields are its keys.
SECTIONS: dict[str, Callable[[], tuple[Binding, ...]]] = {
    "samples": lambda: (Binding(PrepareConfig),),
    "store": lambda: (Binding(StoreConfig),),
    "model": lambda: (
        Binding(ModelRunConfig),
        Binding(ExtractConfig, frozenset({"layers", "languages", "quota"})),
    ),
    "sae": lambda: (Binding(SaeConfig), Binding(DataConfig), Binding(TrainerConfig), Binding(EncodeConfig)),
    "analysis": _analysis_bindings,
    # the held-out split is the sae section's (val_fraction, seed), the forward batch the model section's
    "evaluate": lambda: (
        Binding(EvaluatePlan),
        Binding(EvaluateConfig, frozenset({"val_fraction", "seed", "batch_size"})),
    ),
    "interventions": lambda: (
        Binding(InterventionPlan),
        Binding(InterventionConfig, frozenset({"mode", "batch_size", "max_new_tokens"})),
        Binding(CaptionConfig, frozenset({"batch_size"})),
    ),
    "explain": lambda: (Binding(ExplainConfig),),
}


def empty_section(name: str) -> Section:
    """Section ``name`` setting nothing (every command keeps its defaults)."""
    return parse_section(name, None, SECTIONS[name]())


@dataclass(frozen=True)
class PipelineConfig(Settings):
    """Everything one run of the pipeline needs, locally or on SLURM."""

    paths: PathsConfig = setting(help="where inputs and outputs live")
    layers: tuple[int, ...] | None = layers_setting(
        "decoder layers to store and analyse", "all of the model's"
    )
    languages: tuple[str, ...] | None = languages_setting("prompt languages", "every language with a prompt")
    skip: tuple[str, ...] = setting(
        (), help="steps to leave out (e.g. [caption, intervene]); later steps still run"
    )
    prompts: dict[str, str] = setting(
        default_factory=dict,
        help="prompt per language key replacing or adding to the study's (`init --prompt`)",
    )
    quota: str | None = setting(
        None, help="byte quota of the store's filesystem area (e.g. 500G): extraction refuses to outgrow it"
    )
    samples: Section = setting(default_factory=partial(empty_section, "samples"), help="`prepare` settings")
    store: Section = setting(
        default_factory=partial(empty_section, "store"), help="`init` settings: the store's chunks and codecs"
    )
    model: Section = setting(
        default_factory=partial(empty_section, "model"),
        help="how `extract`, `caption` and `intervene` run the model",
    )
    sae: Section = setting(
        default_factory=partial(empty_section, "sae"), help="`train` and `encode` settings"
    )
    analysis: Section = setting(
        default_factory=partial(empty_section, "analysis"), help="`analyze all` settings"
    )
    evaluate: Section = setting(
        default_factory=partial(empty_section, "evaluate"),
        help="which SAE sets `evaluate` compares, and its settings",
    )
    interventions: Section = setting(
        default_factory=partial(empty_section, "interventions"),
        help="which interventions run, and `caption`/`intervene` settings",
    )
    explain: Section = setting(
        default_factory=partial(empty_section, "explain"),
        help="`explain` settings (the demo also explains with its own model folder)",
    )
    demo: DemoConfig | None = setting(None, help="build demo captions, images and a tiny model first")
    slurm: SlurmConfig | None = setting(None, help="how steps are submitted (needed by `sae-store jobs`)")

    def check(self) -> None:
        if self.layers is not None and not self.layers:
            raise self.rule_error("{layers} must be a non-empty list of layer indices or null for all")
        if self.languages is not None and not self.languages:
            raise self.rule_error("{languages} must be a non-empty list (e.g. [en, ar]) or null for all")
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
        """Plain dicts and lists keyed as in YAML; :func:`config_from_dict` reads it back."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Section):
                out[f.name] = value.to_dict()
            elif isinstance(value, Settings):
                out[f.name] = _plain(value.to_dict())
            else:
                out[f.name] = _plain(value)
        return out

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


def _expand(key: str, path: str) -> str:
    """``path`` with its environment variables (``$SCRATCH``, ``${USER}``) replaced; an unset one is refused
    (it would become a folder literally named ``$USER``)."""
    expanded = os.path.expandvars(path)
    unset = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expanded)
    if unset:
        names = ", ".join(f"${n}" for n in dict.fromkeys(unset))
        raise ConfigError(
            f"paths.{key} {path!r} names {names}, which is not set here; set it (export {unset[0]}=...) or "
            "write the path out"
        )
    return expanded


def config_from_dict(data: Any, *, root: str | Path | None = None) -> PipelineConfig:
    """Build a :class:`PipelineConfig` from plain data, checking keys and types section by section.

    ``root`` replaces ``paths.root``. Environment variables in paths (``$SCRATCH``) are expanded and a
    relative root is made absolute against the current directory.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"a pipeline config must be a mapping of sections, got {type(data).__name__}")
    unknown_keys(data, [f.name for f in fields(PipelineConfig)], "the config")
    data = dict(data)
    given = dict(data.get("paths") or {})
    if root is not None:
        given["root"] = str(root)
    paths = {k: _expand(k, v) if isinstance(v, str) else v for k, v in given.items()}
    if paths.get("root"):
        paths["root"] = str(Path(str(paths["root"])).expanduser().absolute())
    data["paths"] = paths
    for name, bindings in SECTIONS.items():
        data[name] = parse_section(name, data.get(name), bindings())
    cfg: PipelineConfig = PipelineConfig.from_dict(data, keys="flag", what="the config")
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
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {_yaml_problem(e)}") from e
    return config_from_dict(data or {}, root=root)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line: where the parser stopped (1-based line and column) and why, e.g.
    ``line 2, column 2: expected ',' or ']', but got ':' (while parsing a flow sequence from line 1)``."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return " ".join(str(error).split())
    mark = error.problem_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    context = ""
    if error.context:
        start = error.context_mark
        since = f" from line {start.line + 1}" if start is not None and start.line != mark.line else ""
        context = f" ({error.context}{since})"
    return f"{where}: {error.problem}{context}; fix the file there and rerun"


def example_text(source: Path, written_to: str | Path | None = None) -> str:
    """An example config's text, then every settings key it leaves out with its default, commented;
    the commands in its header name ``written_to`` (the copy) instead of the example's own file."""
    text = source.read_text(encoding="utf-8")
    if written_to is not None:
        text = text.replace(f"configs/{source.name}", str(written_to))
    data = yaml.safe_load(text) or {}
    lines = ["", "# Every other setting with its default (uncomment under its section to change it):"]
    for name, bindings in SECTIONS.items():
        given = set(data.get(name) or {})
        rest = [f for key, f in section_fields(bindings()).items() if key not in given]
        if rest:
            lines.append(f"# {name}:")
            for f in rest:
                shown = f.setting.default_text or yaml.safe_dump(_plain(f.default), default_flow_style=True)
                lines.append(
                    f"#   {f.key}: {shown.strip().removesuffix('...').strip()}    # {f.setting.help}"
                )
    return text.rstrip("\n") + "\n" + "\n".join(lines) + "\n"


#: What ``sae-store demo --quick`` changes in the demo config: two layers, short SAE training, no
#: captions, interventions or permutations; a check that an installation works end to end (in
#: jobs/demo.py's QUICK_TIME).
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
