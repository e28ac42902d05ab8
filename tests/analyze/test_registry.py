"""A toy analysis, one function and config plus one registration, in ``analyze``, ``analyze all``, the
pipeline YAML and the report like a built-in one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import xarray as xr

from sae_store.analyze.registry import ANALYSES, Analysis, register_analysis
from sae_store.analyze.results import write_analysis, write_json
from sae_store.configbase import Settings, setting
from sae_store.errors import ConfigError
from sae_store.jobs.config import DEMO_CONFIG, config_from_dict, example_text
from sae_store.jobs.steps import get_step
from sae_store_cli.main import main
from tests.conftest import cli_help


@dataclass(frozen=True)
class CountConfig(Settings):
    """The toy analysis' one setting."""

    count_scale: float = setting(1.0, help="multiplier of the toy count", gt=0)


def _count(ctx: Any, config: CountConfig) -> Path:
    n = int(ctx.inputs.features.sizes["sample"])
    write_analysis(
        ctx.inputs.store,
        "count",
        xr.Dataset({"n": ((), config.count_scale * n)}, attrs={"config": config.to_dict()}),
    )
    return write_json(ctx.out_dir, "count.json", {"n": config.count_scale * n})


@pytest.fixture
def toy_analysis() -> Iterator[None]:
    register_analysis(Analysis("count", "samples with features, scaled", CountConfig, _count))
    yield
    ANALYSES.unregister("count")


def test_a_toy_analysis_runs_in_analyze_all_the_pipeline_and_the_report(
    toy_analysis: None, built: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "count" in cli_help(["analyze"], capsys)
    assert "--count-scale" in cli_help(["analyze", "all"], capsys)
    assert "count_scale: 1.0" in example_text(DEMO_CONFIG)
    cfg = config_from_dict({"paths": {"root": str(tmp_path)}, "analysis": {"count_scale": 3}})
    assert "--count-scale 3.0" in " ".join(get_step("analyze").args(cfg))
    store = str(built.store.path)
    out = tmp_path / "results"
    assert main(["analyze", "count", store, "--results", str(out), "--count-scale", "2"]) == 0
    assert json.loads((out / "count.json").read_text())["n"] == 2 * built.store.layout.n_samples
    saes = str(built.sae_dirs[0].parent)
    argv = ["analyze", "all", store, "--results", str(out), "--saes", saes, "--cluster", "none",
            "--bootstrap", "0", "--permutations", "0", "--overlap-permutations", "0"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert str(out / "count.json") in capsys.readouterr().out.splitlines()
    report = tmp_path / "report"
    assert main(["report", store, "--out", str(report), "--results", str(out)]) == 0
    summary = json.loads((report / "summary.json").read_text())["sections"]
    assert summary["analysis_count"]["variables"] == ["n"]


def test_an_analysis_registered_twice_is_refused_with_both_places(toy_analysis: None) -> None:
    with pytest.raises(
        ConfigError, match=r"analysis 'count' is registered twice: at .*test_registry.py:\d+ and at "
    ):
        register_analysis(Analysis("count", "again", CountConfig, _count))
