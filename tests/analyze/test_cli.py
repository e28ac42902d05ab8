"""``sae-store analyze ...`` end to end on the synthetic store, and the CLI's refusals."""

from __future__ import annotations

import contextlib
import json
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
from dask import delayed

from sae_store.analyze.cluster import compute_tasks, make_cluster, open_cluster
from sae_store.analyze.config import ClusterConfig
from sae_store.analyze.results import has_analysis
from sae_store.errors import ConfigError
from sae_store_cli.main import main

from .synthetic import Built, build_store, make_sae

FAST = ["--cluster", "none", "--bootstrap", "50", "--overlap-permutations", "100",
        "--folds", "3", "--top-samples", "3", "--n-features", "1", "--image-size", "32"]  # fmt: skip
# each analysis takes only its own options
FAST_INTERPRET = ["--top-samples", "3", "--n-features", "1"]
FAST_CROSSLINGUAL = ["--cluster", "none", "--overlap-permutations", "100"]
FAST_BIAS = ["--cluster", "none", "--bootstrap", "50"]


def test_analyze_all_writes_every_result(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "res"
    saes = str(built.sae_dirs[0].parent)
    argv = [
        "analyze",
        "all",
        str(built.store.path),
        "--saes",
        saes,
        "--results",
        str(out),
        "--permutations",
        "10",
        *FAST,
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out.split()
    names = ["comprehensive_analysis_results.json", "crosslingual.json", "crosslayer.json", "interpret.json",
             "visual.json", "qualitative.json"]  # fmt: skip
    assert [Path(p).name for p in printed] == names
    bias = json.loads((out / names[0]).read_text())
    assert bias["layers"]["0"]["permutation_null"]["permutations"] == 10
    crosslayer = json.loads((out / "crosslayer.json").read_text())
    assert "lineage" in crosslayer["layers"]["0"]["en"]  # --saes gives decoders for the lineage
    assert len(list((out / "visual").glob("*.png"))) == 8  # 2 layers x 2 languages x (1 male + 1 female)
    assert (out / "qualitative.csv").is_file()


def test_saes_with_the_wrong_width_are_refused(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saes = tmp_path / "saes"
    make_sae(8, 32, seed=0).save(saes / "layer_0")
    argv = ["analyze", "interpret", str(built.store.path), "--saes", str(saes), "--layers", "0", "--results",
            str(tmp_path / "o"), *FAST_INTERPRET]  # fmt: skip
    assert main(argv) == 2
    assert "has d_in=8 but the store's activations have hidden size 16" in capsys.readouterr().err
    assert main([*argv[:3], "--layers", "0", *FAST_INTERPRET]) == 2
    assert "`analyze interpret` needs the SAEs: pass --saes DIR" in capsys.readouterr().err
    make_sae(16, 20, seed=0).save(saes / "layer_1")
    assert main([*argv[:5], "--layers", "1", *FAST_INTERPRET]) == 2
    assert "has d_sae=20 but the features group has 32 features" in capsys.readouterr().err


def test_crosslingual_on_one_language_exits_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = build_store(tmp_path, languages=("en",))
    argv = ["analyze", "crosslingual", str(one.store.path), "--results", str(tmp_path / "o"),
            *FAST_CROSSLINGUAL]  # fmt: skip
    assert main(argv) == 2
    assert (
        "the cross-lingual analysis needs two languages; the features group holds ['en']"
        in capsys.readouterr().err
    )


def test_one_bootstrap_resample_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    built = build_store(tmp_path)
    out = tmp_path / "o"
    argv = [
        "analyze",
        "bias",
        str(built.store.path),
        "--out",
        str(out),
        "--cluster",
        "none",
        "--bootstrap",
        "1",
    ]
    assert main(argv) == 2
    expected = (
        "sae-store analyze bias: error: --bootstrap must be 0 (no confidence intervals of d) or at least 2 "
        "resamples, got 1: a BCa interval needs the spread of several resamples (the default is 1000)"
    )
    assert capsys.readouterr().err.strip().splitlines()[-1] == expected
    assert not out.exists() and not has_analysis(built.store, "bias")


def test_local_cluster_runs_tasks_in_worker_processes() -> None:
    config = ClusterConfig(kind="local", workers=1, memory_per_worker="1GiB")
    with socket.socket() as taken, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with contextlib.suppress(OSError):  # if the port is held already, the situation is the same
            taken.bind(("", 8787))  # dask's default port, held by another cluster on this node
            taken.listen()
        with open_cluster(config) as client:
            assert client is not None
            results = compute_tasks([delayed(np.add)(i, 1) for i in range(3)], client, desc="test")
    assert results == [1, 2, 3]
    assert not [w for w in caught if "already in use" in str(w.message)]
    with open_cluster(ClusterConfig(kind="none")) as none:
        assert none is None


def test_cluster_config_validation() -> None:
    with pytest.raises(ConfigError, match=r"kind must be one of \['local', 'slurm', 'none'\], got 'pbs'"):
        ClusterConfig(kind="pbs")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"workers must be a positive integer, got 0"):
        ClusterConfig(workers=0)


def test_slurm_cluster_renders_the_configured_job_without_submitting() -> None:
    config = ClusterConfig(
        kind="slurm", workers=3, threads_per_worker=4, memory_per_worker="8GiB", slurm_queue="cpu",
        slurm_account="proj", slurm_walltime="01:00:00", slurm_directives=("--qos=short",),
    )  # fmt: skip
    cluster = make_cluster(config)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in ("#SBATCH -p cpu", "#SBATCH -A proj", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=8G",
                 "#SBATCH -t 01:00:00", "#SBATCH --qos=short", "--nthreads 4"):  # fmt: skip
        assert line in script


def test_results_go_beside_the_store_by_default(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    # the same default as `intervene`, and where `report` looks for results
    assert main(["analyze", "bias", str(built.store.path), *FAST_BIAS]) == 0
    expected = built.store.path.resolve().parent / "results" / "comprehensive_analysis_results.json"
    assert capsys.readouterr().out.split() == [str(expected)]
    assert json.loads(expected.read_text())["layers"]["0"]["male_biased_features"] is not None


@pytest.mark.parametrize(
    ("which", "own", "foreign"),
    [
        (
            "bias",
            ["--alpha", "--bootstrap", "--cluster", "--layers SPEC"],
            ["--overlap-permutations", "--bins", "--folds"],
        ),
        ("crosslingual", ["--top-k", "--saes-by-language"], ["--alpha", "--bins", "--saes DIR"]),
        ("crosslayer", ["--folds", "--probe-c", "--saes DIR"], ["--alpha", "--top-k", "--bins"]),
        (
            "interpret",
            ["--bins", "--model", "--top-samples"],
            ["--cluster", "--alpha", "--image-size", "--folds"],
        ),
        ("visual", ["--image-size", "--features"], ["--bins", "--cluster", "--n-samples"]),
        (
            "qualitative",
            ["--n-samples", "--sample-ids"],
            ["--bins", "--saes DIR", "--cluster", "--statistic"],
        ),
        ("all", ["--alpha", "--top-k", "--folds", "--bins", "--image-size", "--n-samples"], []),
    ],
)
def test_each_analysis_lists_only_its_options_with_defaults(
    which: str, own: list[str], foreign: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["analyze", which, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in own:
        assert flag in text, flag
    for flag in foreign:
        assert f"{flag} " not in text and not text.endswith(flag), flag
    assert "--seed S seed of every resampling (default: 0)" in text


def test_analyze_takes_layer_ranges(built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    assert (
        main(["analyze", "bias", str(built.store.path), "--layers", "0-1", "--results", str(out), *FAST_BIAS])
        == 0
    )
    assert set(json.loads((out / "comprehensive_analysis_results.json").read_text())["layers"]) == {"0", "1"}
    assert main(["analyze", "bias", str(built.store.path), "--layers", "1,1", *FAST_BIAS]) == 2
    assert "--layers '1,1' names layer(s) [1] more than once" in capsys.readouterr().err
