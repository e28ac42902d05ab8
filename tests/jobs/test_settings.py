"""One declaration per setting: every field of every config reaches the command line, the pipeline YAML
and the rendered job, with the same default and the same value."""

from __future__ import annotations

import re
import shlex
from itertools import pairwise
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest

from sae_store.configbase import SettingField, declared, strip_optional
from sae_store.intervene.config import InterventionConfig
from sae_store.jobs.config import SECTIONS, config_from_dict, example_text
from sae_store.jobs.plan import plan
from sae_store.jobs.render import render_script
from sae_store.jobs.sections import section_fields
from sae_store.jobs.steps import TASK_ID, get_step
from sae_store.resources import example_config
from sae_store.train.config import DataConfig, EncodeConfig, SaeConfig, TrainerConfig
from sae_store_cli.main import build_parser
from sae_store_cli.options import build
from sae_store_cli.train_cmds import run_config

#: The pipeline step (and command) that takes each section's config classes.
STEP_OF = {
    "PrepareConfig": "prepare",
    "StoreConfig": "init",
    "ExtractConfig": "extract",
    "ModelRunConfig": "extract",
    "CaptionConfig": "caption",
    "SaeConfig": "train",
    "DataConfig": "train",
    "TrainerConfig": "train",
    "EncodeConfig": "encode",
    "EvaluateConfig": "evaluate",
    "InterventionConfig": "intervene-ablate",
    "BiasConfig": "analyze",
    "CrossLingualConfig": "analyze",
    "CrossLayerConfig": "analyze",
    "InspectConfig": "analyze",
    "ClusterConfig": "analyze",
}
#: Values other than the default where the generic choice would break a rule between fields.
OTHER = {
    "lr_warmup_steps": 7,
    "matryoshka_widths": (64, 128, 256),
    "d_sae": 256,
    "n_controls": 12,
    "features": "top-female:3",
    "rank_language": "ar",
    "device": "cpu",
    "dtype": "float32",
    "memory_per_worker": "2GiB",
    "device_memory": "40GiB",
    "roles": ("text",),
    "slurm_walltime": "01:00:00",
    "gender_column": "sex",
    "clevel": 7,
}
#: Sections' own keys that are no command's setting (which experiments the pipeline runs).
PIPELINE_ONLY = {"InterventionPlan", "EvaluatePlan"}
#: Keys the pipeline sets from other sections (the step renders them itself).
ELSEWHERE = {"cluster", "slurm_queue", "slurm_account", "slurm_walltime", "mode"}


def _other(f: SettingField) -> Any:
    """A valid value of ``f`` other than its default."""
    if f.name in OTHER:
        return OTHER[f.name]
    choices = f.choices()
    if choices is not None:
        return next(c for c in choices if c != f.default)
    tp = strip_optional(f.type)
    if tp is bool:
        return not f.default
    if tp is int:
        return (f.default or 0) + 3
    if tp is float:
        low = f.setting.gt if f.setting.gt is not None else f.setting.ge or 0.0
        high = f.setting.lt if f.setting.lt is not None else f.setting.le
        return (low + high) / 2 if high is not None else (f.default or 1.0) * 2 + 0.5
    if get_origin(tp) is tuple:
        item = get_args(tp)[0]
        return ("x-one", "x-two") if item is str else tuple(reversed(f.default)) or (5,)
    raise AssertionError(f"no other value for {f.owner.__name__}.{f.name}")


def _fields() -> list[tuple[str, type, SettingField]]:
    out = []
    for section, bindings in SECTIONS.items():
        keys = section_fields(bindings())
        for cls, exclude in bindings():
            if cls.__name__ in PIPELINE_ONLY:
                continue
            for f in declared(cls):
                if f.setting.expose and f.name not in exclude and keys[f.key] is f:
                    out.append((section, cls, f))
    return out


FIELDS = _fields()


def test_every_command_setting_has_a_section() -> None:
    walked = {(cls.__name__, f.name) for _, cls, f in FIELDS}
    for cls in {cls for _, cls, _ in FIELDS}:
        assert cls.__name__ in STEP_OF, cls
    assert ("DataConfig", "read_threads") in walked and ("DataConfig", "memory_budget") in walked
    assert len(walked) > 90


def _argv(step_name: str, cfg: Any) -> list[str]:
    return [("0" if a is TASK_ID else a) for a in get_step(step_name).argv(cfg, 1)]


def _required(cls: type) -> dict[str, Any]:
    """Values for a class's required fields (the layer of a training run, an experiment's mode)."""
    return {"layer": 0} if cls is DataConfig else {"mode": "ablate"} if cls is InterventionConfig else {}


EXAMPLE = example_text(example_config("demo"))


@pytest.mark.parametrize(("section", "cls", "f"), FIELDS, ids=[f"{s}.{f.key}" for s, _, f in FIELDS])
def test_each_setting_reaches_the_cli_the_yaml_and_the_rendered_job(
    section: str, cls: type, f: SettingField, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()
    step = get_step(STEP_OF[cls.__name__])
    # the command line: the option, its help showing the declared default
    with pytest.raises(SystemExit):
        parser.parse_args([*step.command, "--help"])
    shown = "".join(capsys.readouterr().out.split())
    assert f"--{f.flag}" in shown and "".join(f"(default: {f.shown_default()})".split()) in shown
    # the YAML: `jobs example` lists the key (set in the example, or commented with its default)
    assert re.search(rf"^\s*(#\s+)?{f.key}:", EXAMPLE, re.M), f.key
    if f.key in ELSEWHERE:
        return
    # the rendered job: a value set in the YAML is the value the command builds
    cfg = config_from_dict({"paths": {"root": str(tmp_path)}, section: {f.key: _other(f)}})
    fixed = {"layer": 0} if cls is DataConfig else {}
    built = build(parser.parse_args(_argv(step.name, cfg)), cls, **fixed)
    expected = getattr(cfg, section).build(cls, **_required(cls))
    assert getattr(built, f.name) == getattr(expected, f.name) != f.default, _argv(step.name, cfg)
    # with the key left out, the command keeps the declared default
    plain = config_from_dict({"paths": {"root": str(tmp_path)}})
    built = build(parser.parse_args(_argv(step.name, plain)), cls, **fixed)
    assert getattr(built, f.name) == getattr(cls(**_required(cls)), f.name)


def test_read_threads_and_memory_budget_reach_the_provider_of_a_rendered_slurm_job(tmp_path: Path) -> None:
    cfg = config_from_dict(
        {
            "paths": {"root": str(tmp_path)},
            "layers": [5],
            "sae": {"read_threads": 3, "memory_budget": "8GiB", "val_fraction": 0.25, "log_every": 7},
            "slurm": {"partition": "gpu", "executable": "sae-store"},
        }
    )
    (train,) = [p for p in plan(cfg, slurm=True) if p.step.name == "train"]
    script = render_script(cfg, train)
    line = next(ln for ln in script.splitlines() if ln.lstrip().startswith("sae-store train"))
    words = [
        w.replace("$SLURM_ARRAY_TASK_ID", "5").replace("${SLURM_ARRAY_TASK_ID}", "5")
        for w in shlex.split(line)
    ]
    config = run_config(build_parser().parse_args(words[1:]), layer=5)
    assert (config.data.read_threads, config.data.memory_budget) == (3, 8 * 2**30)
    assert (config.data.val_fraction, config.trainer.log_every, config.data.layer) == (0.25, 7, 5)
    assert isinstance(config.sae, SaeConfig) and isinstance(config.trainer, TrainerConfig)
    assert EncodeConfig() == build(build_parser().parse_args(["encode", "s", "--saes", "d"]), EncodeConfig)


def test_evaluate_holds_out_the_samples_training_held_out_and_runs_the_models_batch(tmp_path: Path) -> None:
    from sae_store.evaluate.config import EvaluateConfig

    cfg = config_from_dict(
        {
            "paths": {"root": str(tmp_path)},
            "sae": {"val_fraction": 0.25, "seed": 3, "batch_size": 999},
            "model": {"batch_size": 4},
            "evaluate": {"saes": ["gs=/models/gemma-scope/layer_{L}", "other"], "folds": 3},
        }
    )
    words = _argv("evaluate", cfg)
    built = build(build_parser().parse_args(words), EvaluateConfig)
    assert (built.val_fraction, built.seed, built.batch_size, built.folds) == (0.25, 3, 4, 3)
    sets = [w for a, w in pairwise(words) if a == "--saes"]
    assert sets == [str(tmp_path / "saes"), "gs=/models/gemma-scope/layer_{L}", str(tmp_path / "other")]
