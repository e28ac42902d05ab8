"""The demo's real data end to end: the commands the report suggests finish a partly finished run,
the results carry the shapes users' scripts read (male- and female-biased features, the
``male_biased_ablation`` of the cross-layer summary), and the finished store - every group - is read
by other tools (TensorStore, netCDF, cf_xarray) and projected file by file by ``du``."""

from __future__ import annotations

import json
import shlex
import shutil
from collections import Counter
from pathlib import Path

import pytest

from sae_store.store import open_store, store_usage
from sae_store_cli.main import main
from tests.store.test_portable import check_portable, check_tree_exports


def _suggested(report_dir: Path) -> list[str]:
    summary = json.loads((report_dir / "summary.json").read_text())
    steps = summary["sections"]["completeness"]["steps"]
    return list(dict.fromkeys(c for s in steps for c in s["commands"]))


@pytest.mark.slow
def test_report_commands_finish_the_demo_run_and_results_have_every_shape(
    demo_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    store = run / "store.zarr"
    assert main(["report", str(store), "--out", str(tmp_path / "before")]) == 0
    commands = _suggested(tmp_path / "before")
    assert [shlex.split(c)[1] for c in commands] == ["caption", "intervene"]  # caption first
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "sae-store" and main(argv[1:]) == 0, command
    assert main(["report", str(store), "--out", str(tmp_path / "after")]) == 0
    assert _suggested(tmp_path / "after") == []

    bias = json.loads((run / "results" / "comprehensive_analysis_results.json").read_text())
    for layer in bias["layers"].values():
        assert layer["n_male_biased_significant"] > 0 and layer["n_female_biased_significant"] > 0
        assert len(layer["male_biased_features"]) > 0 and len(layer["female_biased_features"]) > 0
        assert {"feature", "d", "q"} <= set(layer["male_biased_features"][0])
        assert layer["male_biased_features"][0]["d"] > 0 > layer["female_biased_features"][0]["d"]
    cross = json.loads((run / "results" / "cross_layer_results.json").read_text())
    (layer_key,) = cross["male_biased_ablation"]
    assert isinstance(cross["male_biased_ablation"][layer_key]["differential"], float)

    # every array of every group opens with TensorStore (labels through their codes), the whole tree
    # exports to netCDF, and du's projection is the files on disk, group by group
    counts, labels = check_portable(store)
    assert counts["read"] > 100
    # the labels that were strings only in version 2, in every group that has them
    coded = {name.rpartition("/")[2] for name in labels if "/" in name}
    assert {"gender", "language", "direction", "entry_language", "hist_language"} <= coded
    for group in ("features", "generation", "analysis/bias"):
        assert f"{group}/language" in labels, group
    check_tree_exports(store, tmp_path / "tree.nc")
    groups = ("features", "generation", "analysis", "evaluation")
    tops = (f.relative_to(store).parts[0] for f in store.rglob("*") if f.is_file())
    on_disk = Counter(top if top in groups else "(root)" for top in tops)
    usage = store_usage(open_store(store))
    assert usage.projected_files_by_group == dict(sorted(on_disk.items())) and set(on_disk) >= set(groups)
