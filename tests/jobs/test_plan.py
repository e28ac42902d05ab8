"""Planning: which steps and array tasks a run has, what is pending, and the checks on array sizes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sae_store.errors import ConfigError
from sae_store.jobs.config import PipelineConfig
from sae_store.jobs.plan import pipeline_layers, plan
from sae_store.jobs.steps import ancestors
from sae_store.store import StoreConfig, create_store, open_store
from tests.conftest import model_info, samples_table


def _store(cfg: PipelineConfig, n_samples: int) -> None:
    create_store(cfg.paths.path("store"), samples_table(n_samples), model_info(),
                 config=StoreConfig(samples_per_shard=cfg.store.samples_per_shard))  # fmt: skip


def _by_name(
    cfg: PipelineConfig, *, slurm: bool = True
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    return {p.step.name: (p.tasks, p.pending) for p in plan(cfg, slurm=slurm)}


def test_fresh_demo_run_has_everything_pending(make_config: Callable[..., PipelineConfig]) -> None:
    plans = _by_name(make_config())
    assert list(plans) == [
        "demo-data", "tiny-model", "prepare", "init", "extract", "caption", "train", "encode", "export-saes",
        "evaluate", "analyze", "intervene-ablate", "intervene-amplify", "intervene-neutralise",
        "intervene-summary", "report",
    ]  # fmt: skip
    assert plans["extract"] == ((0, 1, 2), (0, 1, 2)) and plans["encode"][0] == (0, 1, 2)
    assert plans["train"][0] == (0, 1, 2, 3)  # every layer of the demo model
    assert plans["evaluate"] == ((0, 1, 2, 3), (0, 1, 2, 3))
    assert plans["intervene-ablate"][0] == (2,)  # the demo intervenes at layer 2 only
    local = _by_name(make_config(), slurm=False)
    assert local["extract"] == ((0,), (0,))  # one local task over all samples


def test_steps_left_out_by_config(make_config: Callable[..., PipelineConfig]) -> None:
    cfg = make_config(demo=None, layers=[0, 1], skip=["caption"], interventions={"modes": ["amplify"]})
    names = list(_by_name(cfg))
    assert names == ["prepare", "init", "extract", "train", "encode", "evaluate", "analyze",
                     "intervene-amplify", "intervene-summary", "report"]  # fmt: skip
    with pytest.raises(
        ConfigError, match=r"skip names unknown step\(s\) \['captions'\]; the pipeline's steps"
    ):
        plan(make_config(skip=["captions"]), slurm=False)
    with pytest.raises(ConfigError, match=r"slurm.steps names unknown step\(s\) \['extraction'\]"):
        plan(make_config(slurm={"steps": {"extraction": {"cpus": 2}}}), slurm=True)


def test_complete_tasks_are_not_pending_and_their_dependants_are(
    make_config: Callable[..., PipelineConfig],
) -> None:
    cfg = make_config(demo=None)  # 44 samples / 8 per shard = 6 blocks, 2 per task
    _store(cfg, 44)
    store = open_store(cfg.paths.path("store"))
    flags = np.zeros((4, 2, 44), dtype=bool)
    flags[:, :, 0:16] = True  # task 0's blocks
    flags[:, :, 32:44] = True  # task 2's blocks
    flags[3, 1, 40] = False  # ... but one sample of one layer and language is missing
    for layer in range(4):
        for j, lang in enumerate(("en", "ar")):
            store.write("complete", flags[layer, j], start=0, layer=layer, language=lang)
    (cfg.paths.path("prepared") / "samples.csv").parent.mkdir(parents=True)
    (cfg.paths.path("prepared") / "samples.csv").write_text("")
    plans = _by_name(cfg)
    assert plans["prepare"][1] == () and plans["init"][1] == ()
    assert plans["extract"] == ((0, 1, 2), (1, 2))
    assert plans["train"][1] == (0, 1, 2, 3)  # reads what extract is still writing


def test_array_larger_than_the_shard_blocks_is_refused(make_config: Callable[..., PipelineConfig]) -> None:
    message = (
        r"slurm.steps.extract.tasks \(or slurm.tasks\) is 7, but at most 48 samples will be prepared, "
        r"which is 6 shard block\(s\) of 8: an array task needs at least one block; use at most 6 tasks"
    )
    with pytest.raises(ConfigError, match=message):
        plan(make_config(slurm={"tasks": 7}), slurm=True)
    cfg = make_config(demo=None, slurm={"steps": {"encode": {"tasks": 4}}})
    _store(cfg, 20)
    message = (
        r"slurm.steps.encode.tasks .* is 4, but the store holds 20 samples, which is 3 shard block\(s\) of 8"
    )
    with pytest.raises(ConfigError, match=message):
        plan(cfg, slurm=True)


def test_layers_come_from_config_store_or_model(
    make_config: Callable[..., PipelineConfig], tmp_path: Path
) -> None:
    assert pipeline_layers(make_config(layers=[5, 7])) == (5, 7)
    assert pipeline_layers(make_config()) == (0, 1, 2, 3)  # the demo model's
    cfg = make_config(demo=None)
    model = cfg.paths.path("model")
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"text_config": {"num_hidden_layers": 34}}')
    assert pipeline_layers(cfg) == tuple(range(34))
    (model / "config.json").unlink()
    with pytest.raises(
        ConfigError, match=r"cannot tell which layers to run: `layers` is not set and .*config.json"
    ):
        pipeline_layers(cfg)


def test_ancestors_are_transitive() -> None:
    assert ancestors("extract") == {"init", "prepare", "tiny-model", "demo-data"}
    assert {"train", "extract", "analyze", "caption"} <= ancestors("intervene-ablate")
