"""``sae-store caption``, ``intervene`` and ``intervene-summary`` end to end on the tiny model."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from sae_store.analyze.results import write_analysis
from sae_store.store import open_store
from sae_store.train.config import SaeConfig
from sae_store.train.formats import save_sae
from sae_store.train.sae import build_sae
from sae_store_cli.main import main

D_SAE = 128


@pytest.fixture(scope="module")
def saes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random ReLU SAEs for layers 1 and 2 in the ``sae-store train`` layout."""
    root = tmp_path_factory.mktemp("saes")
    for layer in (1, 2):
        sae = build_sae(SaeConfig(architecture="relu", d_in=64, d_sae=D_SAE), seed=layer)
        save_sae(sae, root / f"layer_{layer}", metadata={"hook_layer": layer})
    return root


def _bias_analysis(store_path: Path) -> None:
    # d > 0 with q < alpha ranks male-biased features: 9 (0.9), 4 (0.6), 30 (0.2); 7 is not significant
    d, q = np.zeros((1, 2, D_SAE)), np.ones((1, 2, D_SAE))
    for feature, effect, qval in [
        (9, 0.9, 0.001),
        (4, 0.6, 0.01),
        (30, 0.2, 0.04),
        (7, 1.5, 0.3),
        (50, -0.8, 0.01),
    ]:
        d[0, 0, feature], q[0, 0, feature] = effect, qval
    ds = xr.Dataset(
        {"d": (("layer", "language", "feature"), d), "q": (("layer", "language", "feature"), q)},
        coords={"layer": [2], "language": np.array(["en", "ar"], dtype=object), "feature": np.arange(D_SAE)},
        attrs={"config": {"alpha": 0.05}},
    )
    write_analysis(open_store(store_path), "bias", ds)


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_caption_command(store_copy: Path, tiny_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        ["caption", str(store_copy), "--model", str(tiny_dir), "--max-new-tokens", "6"], capsys
    )
    assert code == 0 and "generated 0 captions (16 already stored)" in out and "en: " in out
    code, _, err = _run(
        ["caption", str(store_copy), "--model", str(tiny_dir), "--max-new-tokens", "7"], capsys
    )
    assert code == 2 and "generated with max_new_tokens=6; this run asks for 7" in err


def test_intervene_ablation_writes_store_and_json(
    store_copy: Path, tiny_dir: Path, saes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "results"
    args = ["intervene", str(store_copy), "--model", str(tiny_dir), "--saes", str(saes), "--layer", "1"]
    args += ["--mode", "ablate", "--features", "3,5,7,11", "--max-samples", "4", "--batch-size", "4"]
    code, out, err = _run([*args, "--bootstrap", "200", "--results", str(out_dir)], capsys)
    assert code == 0, err
    assert "custom_ablation layer 1: differential" in out and "targeted/random" in out
    cross = json.loads((out_dir / "cross_layer_results.json").read_text())
    entry = cross["custom_ablation"]["1"]
    assert isinstance(entry["differential"], float) and entry["features"] == [3, 5, 7, 11]
    assert len(entry["differential_ci"]) == 2 and "random_differential" in entry
    layer_json = json.loads((out_dir / "intervene" / "custom_ablation_layer_1.json").read_text())
    assert len(layer_json["control_sets"]) == 10 and set(layer_json["languages"]) == {"en", "ar"}
    assert (
        "term_counts" in layer_json["languages"]["en"] and "splice_quality" in layer_json["languages"]["ar"]
    )
    ds = xr.open_zarr(store_copy, group="analysis/intervene/custom_ablation/layer_1")
    assert ds["effect"].dims == ("language", "sample") and ds.sizes["control"] == 10
    # stored on the store's whole sample axis (aligned for xr.open_datatree); 4 were evaluated
    assert ds.sizes["sample"] == 8 and int(ds["evaluated"].any("language").sum()) == 4
    assert ds["effect"].where(~ds["evaluated"]).isnull().all()
    ds = ds.isel(sample=ds["evaluated"].any("language").values)
    assert ds["edited_caption"].shape == (2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's notice about consolidated metadata
        assert (
            "/analysis/intervene/custom_ablation/layer_1"
            in xr.open_datatree(store_copy, engine="zarr").groups
        )
    pooled = ds["effect"].mean("language")
    expected = float(
        pooled.where(ds["gender"] == "male").mean() - pooled.where(ds["gender"] == "female").mean()
    )
    assert entry["differential"] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_intervene_from_array_task_with_ranking_and_summary(
    store_copy: Path,
    tiny_dir: Path,
    saes: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _bias_analysis(store_copy)
    out_dir = tmp_path / "results"
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    common = ["--model", str(tiny_dir), "--saes", str(saes), "--controls", "0", "--no-regenerate"]
    common += ["--max-samples", "4", "--batch-size", "4", "--bootstrap", "100", "--results", str(out_dir)]
    amplify = ["intervene", str(store_copy), *common, "--mode", "amplify", "--features", "top-male:3"]
    code, out, err = _run([*amplify, "--alpha", "3", "--dose", "1,3"], capsys)
    assert code == 0, err
    neutralise = ["intervene", str(store_copy), *common, "--mode", "neutralise", "--features", "top-male:2"]
    code, _, err = _run([*neutralise, "--positions", "image"], capsys)
    assert code == 0, err
    cross = json.loads((out_dir / "cross_layer_results.json").read_text())
    assert set(cross) == {"male_biased_amplification", "male_biased_neutralisation"}
    assert cross["male_biased_amplification"]["2"]["features"] == [9, 4, 30]
    assert cross["male_biased_neutralisation"]["2"]["positions"] == "image"
    ds = xr.open_zarr(store_copy, group="analysis/intervene/male_biased_amplification/layer_2")
    assert ds["dose_effect"].sizes["alpha"] == 2
    np.testing.assert_array_equal(ds["dose_effect"].sel(alpha=3.0).values, ds["effect"].values)
    (out_dir / "cross_layer_results.json").unlink()
    code, out, _ = _run(["intervene-summary", str(out_dir)], capsys)
    assert code == 0 and "male_biased_neutralisation: layers 2" in out
    assert json.loads((out_dir / "cross_layer_results.json").read_text()) == cross


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layer", "2", "--saes", "{saes}/layer_1"], "the SAE was trained on layer 1, not layer 2"),
        (
            ["--layer", "1", "--features", "3,500"],
            r"feature indices [500] are out of range: the SAE has d_sae=128",
        ),
        (
            ["--layer", "1", "--mode", "amplify", "--alpha", "0"],
            "--alpha must be > 0 for --mode 'amplify', got 0.0; use --mode 'ablate' to remove features",
        ),
        (
            ["--layer", "1", "--features", "top-male:2"],
            "has no bias results yet; run `sae-store analyze bias",
        ),
        (["--layer", "1", "--controls", "3"], "--controls must be 0 (no controls) or at least 10, got 3"),
    ],
)
def test_intervene_refuses_bad_input(
    captioned_store: Path,
    tiny_dir: Path,
    saes: Path,
    extra: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    args = [
        "intervene",
        str(captioned_store),
        "--model",
        str(tiny_dir),
        "--saes",
        str(saes),
        "--mode",
        "ablate",
    ]
    code, _, err = _run([*args, *[e.format(saes=saes) for e in extra]], capsys)
    assert code == 2
    assert message in err


def test_intervene_needs_a_layer(
    captioned_store: Path, saes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(["intervene", str(captioned_store), "--saes", str(saes), "--mode", "ablate"], capsys)
    assert code == 2 and "no layer given: pass --layer L, or run as a SLURM array task" in err
