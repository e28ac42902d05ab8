"""Summaries, the analysis group and the cross-layer JSON, from synthetic experiment results."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from sae_store.intervene.captions import Caption
from sae_store.intervene.config import InterventionConfig
from sae_store.intervene.experiment import LanguageEffects, LayerResult
from sae_store.intervene.metrics import SpliceQuality
from sae_store.intervene.results import result_key, summarise, to_dataset, write_cross_layer, write_result
from sae_store.store import ActivationStore

GENDERS = np.array(["male", "female", "male", "female", "male", "female"])
SPLICE = SpliceQuality(2.0, 2.5, 4.0, 0.75, 0.1, 0.5, 0.8, 30)


def _result(layer: int, *, mode: str = "amplify", shift: float = 0.0) -> LayerResult:
    rng = np.random.default_rng(layer)
    languages = {}
    for k, lang in enumerate(("en", "ar")):
        effect = np.where(GENDERS == "male", 1.0 + k, -1.0) + shift
        effect[4] = np.nan  # a sample whose caption had no word token
        caps = [Caption(f"c{i}", (1, 2), male=i % 2, female=1) for i in range(6)]
        languages[lang] = LanguageEffects(
            baseline_score=rng.normal(size=6),
            effect=effect,
            control_effects=rng.normal(0, 0.1, size=(10, 6)),
            dose_effects=np.stack([effect * 0, effect]) if mode == "amplify" else np.zeros((0, 6)),
            splice=SPLICE,
            edited_captions=caps,
        )
    config = InterventionConfig(mode=mode, alpha=3.0, dose_alphas=(1.0, 3.0))  # type: ignore[arg-type]
    controls = [tuple(range(10 + 3 * c, 13 + 3 * c)) for c in range(10)]
    return LayerResult(layer, (1, 2, 3), controls, config, languages)


def _baseline() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {lang: (np.zeros(6), np.ones(6)) for lang in ("en", "ar")}


def test_summary_values() -> None:
    s = summarise(_result(3), GENDERS, _baseline(), n_boot=300)
    # pooled effect per sample = mean over languages: male samples (1 + 2) / 2 = 1.5, female -1
    assert s["differential"] == pytest.approx(2.5)
    assert s["languages"]["en"]["differential"] == pytest.approx(2.0)
    assert s["languages"]["ar"]["differential"] == pytest.approx(3.0)
    assert s["differential_detail"]["n_male"] == 2  # sample 4 has no effect
    assert s["differential_ci"] == [pytest.approx(2.5), pytest.approx(2.5)]  # no spread within groups
    assert abs(s["random_differential"]) < 0.3 and s["targeted_random_ratio"] > 5
    counts = s["languages"]["en"]["term_counts"]
    assert (counts["baseline_female"], counts["edited_female"], counts["edited_male"]) == (6, 6, 3)
    assert counts["relative_change_total"] == pytest.approx(0.5)
    assert counts["delta_male"]["mean"] == pytest.approx(0.5)
    dose = s["languages"]["en"]["dose_response"]
    assert [d["alpha"] for d in dose] == [1.0, 3.0] and dose[0]["differential"] == 0.0
    assert s["languages"]["ar"]["splice_quality"]["ce_recovered"] == 0.75
    assert result_key("male_biased", "ablate") == "male_biased_ablation"


def test_dataset_and_json_round_trip(make_store: Callable[..., ActivationStore], tmp_path: Path) -> None:
    store = make_store(n_samples=8)
    result = _result(2)
    summary = summarise(result, GENDERS, _baseline(), n_boot=100)
    ids = np.array([f"s{i}" for i in range(6)])
    group, path = write_result(
        store, tmp_path, "male_biased_amplification", to_dataset(result, ids, GENDERS, summary), summary
    )
    ds = xr.open_zarr(store.path, group=group)
    assert ds["effect"].dims == ("language", "sample") and list(ds["sample"].values) == list(ids)
    np.testing.assert_array_equal(ds["effect"].sel(language="en").values, result.languages["en"].effect)
    assert ds["control_features"].shape == (10, 3) and list(ds["alpha"].values) == [1.0, 3.0]
    assert json.loads(ds.attrs["summary"])["layer"] == 2
    payload = json.loads(path.read_text())
    assert payload["key"] == "male_biased_amplification" and payload["features"] == [1, 2, 3]


def test_cross_layer_shape_and_concurrent_writers(
    make_store: Callable[..., ActivationStore], tmp_path: Path
) -> None:
    store = make_store(n_samples=8)
    errors: list[BaseException] = []

    def task(layer: int) -> None:
        try:
            result = _result(layer, mode="ablate", shift=layer / 10)
            summary = summarise(result, GENDERS, _baseline(), n_boot=50)
            ids = np.array([f"s{i}" for i in range(6)])
            write_result(
                store, tmp_path, "male_biased_ablation", to_dataset(result, ids, GENDERS, summary), summary
            )
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=task, args=(layer,)) for layer in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for layer in range(4):  # every group is in the consolidated metadata, whoever consolidated last
        xr.open_zarr(
            store.path, group=f"analysis/intervene/male_biased_ablation/layer_{layer}", consolidated=True
        )
    cross = json.loads(write_cross_layer(tmp_path).read_text())
    assert list(cross) == ["male_biased_ablation"]
    assert list(cross["male_biased_ablation"]) == ["0", "1", "2", "3"]
    entry = cross["male_biased_ablation"]["3"]
    assert entry["differential"] == pytest.approx(2.5)
    assert {"differential_ci", "random_differential", "targeted_random_ratio", "definition"} <= set(entry)
    assert entry["languages"]["ar"]["differential"] == pytest.approx(3.0)
