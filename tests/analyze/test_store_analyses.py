"""Analyses on a synthetic store: outputs in the store and in the users' JSON shape, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sae_store.analyze import pipeline as P
from sae_store.analyze.config import BiasConfig, CrossLayerConfig, CrossLingualConfig, InspectConfig
from sae_store.analyze.data import Inputs, open_features, open_inputs
from sae_store.analyze.results import read_analysis
from sae_store.analyze.run_bias import run_bias
from sae_store.analyze.run_crosslingual import run_crosslingual
from sae_store.errors import ConfigError, IncompleteError, SaeStoreError
from sae_store.store.results import read_labels

from .synthetic import (
    FEMALE_CELLS,
    FEMALE_PLANTED,
    MALE_CELLS,
    MALE_PLANTED,
    Built,
    build_store,
    write_features,
)


def test_bias_json_has_the_users_shape_and_planted_features(inputs: Inputs, out_dir: Path) -> None:
    path = P.bias_step(inputs, BiasConfig(permutations=30, bootstrap=200), out_dir)
    results = json.loads(path.read_text())
    layer = results["layers"]["1"]
    assert results["primary_language"] == "en" and layer["language"] == "en"
    assert layer["n_male"] == 18 and layer["n_female"] == 18
    assert layer["excluded"] == {"unknown": 2, "ambiguous": 2, "not_encoded": 0}
    male = layer["male_biased_features"]
    female = layer["female_biased_features"]
    assert set(MALE_PLANTED) <= {r["feature"] for r in male}
    assert set(FEMALE_PLANTED) <= {r["feature"] for r in female}
    for r in male + female:
        assert {"feature", "male_mean", "female_mean", "d", "p", "q", "ci_low", "ci_high"} <= set(r)
        assert r["q"] < 0.05 and r["ci_low"] <= r["d"] <= r["ci_high"]
    assert [r["d"] for r in male] == sorted((r["d"] for r in male), reverse=True)
    assert all(r["d"] > 0 for r in male) and all(r["d"] < 0 for r in female)
    null = layer["permutation_null"]
    assert null["observed"] == layer["n_significant"] and null["null_mean"] < 1 and null["p_value"] < 0.05
    assert results["by_language"]["ar"]["layers"]["0"]["language"] == "ar"
    ds = read_analysis(inputs.store, "bias")
    assert ds["d"].dims == ("layer", "language", "feature")
    assert int(ds["n_significant"].sel(layer=1, language="en")) == layer["n_significant"]
    assert ds.attrs["config"]["permutations"] == 30


def test_global_correction_pools_all_families(inputs: Inputs) -> None:
    per = run_bias(inputs, BiasConfig(bootstrap=0))
    pooled = run_bias(inputs, BiasConfig(bootstrap=0, correction="global", permutations=10))
    p = per.dataset["p_welch"].values.ravel()
    from scipy.stats import false_discovery_control

    np.testing.assert_allclose(pooled.dataset["q"].values.ravel(), false_discovery_control(p), rtol=1e-12)
    assert pooled.dataset["null_discoveries"].shape == (2, 2, 10)


def test_bias_refuses_missing_features_group(tmp_path: Path) -> None:
    from sae_store.store import open_store

    built = build_store(tmp_path)
    import shutil

    shutil.rmtree(built.store.path / "features")
    with pytest.raises(
        IncompleteError, match=r"no 'features' group: no SAE features are encoded yet; run `sae-store encode"
    ):
        open_inputs(open_store(built.store.path).path)


def test_bias_refuses_unencoded_and_partly_encoded_layers(tmp_path: Path) -> None:
    built = build_store(tmp_path, encode_layers=(0,))
    features, labels = open_features(built.store), read_labels(built.store)
    with pytest.raises(
        IncompleteError,
        match=r"layer 1 \(en\) has no encoded features yet; run `sae-store encode .* --layer 1` first",
    ):
        run_bias(Inputs(built.store, features, labels), BiasConfig())
    run = run_bias(Inputs(built.store, features, labels), BiasConfig(bootstrap=0), layers=[0])
    assert run.payload["layers"]["0"]["n_male"] == 18
    flags = np.ones((2, 2, 40), dtype=bool)
    flags[0, 0, :3] = False
    feats = np.stack(
        [open_features(built.store)[v].values for v in ("feature_mean", "feature_max", "feature_frac")]
    )
    write_features(built.store, feats, complete=flags)
    features = open_features(built.store)
    n_missing = int(np.isin(labels.gender[:3], ("male", "female")).sum())
    with pytest.raises(
        IncompleteError, match=rf"features of {n_missing} of 36 male/female samples are not encoded yet"
    ):
        run_bias(Inputs(built.store, features, labels), BiasConfig(), layers=[0], languages=["en"])
    inputs = Inputs(built.store, features, labels)
    ok = run_bias(inputs, BiasConfig(bootstrap=0, allow_incomplete=True), layers=[0])
    assert ok.payload["by_language"]["en"]["layers"]["0"]["excluded"]["not_encoded"] == n_missing


def test_bias_refuses_too_few_per_gender(tmp_path: Path) -> None:
    built = build_store(tmp_path, n_male=12, n_female=8)
    with pytest.raises(
        SaeStoreError,
        match=r"has 12 male and 8 female samples with encoded features \(excluded: "
        r"\{'unknown': 2, 'ambiguous': 2, 'not_encoded': 0\}\); the tests need at least 10 of each",
    ):
        run_bias(open_inputs(built.store.path), BiasConfig())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_per_group": 5}, r"min_per_group must be an integer >= 9, got 5"),
        ({"alpha": 1.5}, r"alpha must be in \(0, 1\), got 1.5"),
        ({"test": "ttest"}, r"test must be one of \['welch', 'mannwhitney'\], got 'ttest'"),
        ({"correction": "bonferroni"}, r"correction must be one of \['layer_language', 'global'\]"),
    ],
)
def test_bias_config_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BiasConfig(**kwargs)  # type: ignore[arg-type]


def test_bias_config_round_trip_refuses_unknown_keys() -> None:
    c = BiasConfig(permutations=5)
    assert BiasConfig.from_dict(c.to_dict()) == c
    with pytest.raises(
        ConfigError, match=r"unknown key\(s\) \['alpah'\] in BiasConfig \(did you mean 'alpha'"
    ):
        BiasConfig.from_dict({"alpah": 0.1})


def test_crosslingual_shared_sae(inputs: Inputs, out_dir: Path) -> None:
    path = P.crosslingual_step(inputs, CrossLingualConfig(top_k=5), out_dir)
    layer = json.loads(path.read_text())["layers"]["0"]
    assert layer["spearman_d"]["rho"] > 0.8
    assert layer["overlap"]["male"]["count"] >= 3 and layer["overlap"]["male"]["expected"] == pytest.approx(
        25 / 32
    )
    assert layer["paired_correlation"]["median"] > 0.5
    assert "matching" not in layer
    assert read_analysis(inputs.store, "crosslingual")["d_en"].dims == ("layer", "feature")


def test_crosslingual_refuses_one_language(tmp_path: Path) -> None:
    built = build_store(tmp_path, languages=("en",))
    with pytest.raises(SaeStoreError, match=r"needs two languages; the features group holds \['en'\]"):
        run_crosslingual(open_inputs(built.store.path), CrossLingualConfig())


def test_crosslingual_refuses_unaligned_saes_and_matches_them(built: Built, inputs: Inputs) -> None:
    features = inputs.features.copy()
    perm = np.random.default_rng(0).permutation(32)
    # Arabic "encoded with a separately trained SAE": the same dictionary in another order
    permuted = features.copy(deep=True)
    for v in ("feature_mean", "feature_max", "feature_frac"):
        ar = permuted[v].sel(language="ar").values[..., perm]
        permuted[v].loc[{"language": "ar"}] = ar
    permuted.attrs["saes"] = {str(la): {"en": {"sha256": "aaa"}, "ar": {"sha256": "bbb"}} for la in (0, 1)}
    with pytest.raises(
        SaeStoreError, match=r"layer 0 of 'en' and 'ar' was encoded with different SAEs \(aaa vs bbb\)"
    ):
        run_crosslingual(inputs._replace(features=permuted), CrossLingualConfig())
    decoders = {la: (built.saes[la].W_dec, built.saes[la].W_dec[perm]) for la in (0, 1)}
    matched = run_crosslingual(inputs._replace(features=permuted), CrossLingualConfig(top_k=5),
                               decoders=decoders)  # fmt: skip
    shared = run_crosslingual(inputs._replace(features=features), CrossLingualConfig(top_k=5))
    layer = matched.payload["layers"]["0"]
    assert layer["matching"]["mean_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert layer["spearman_d"]["rho"] == pytest.approx(shared.payload["layers"]["0"]["spearman_d"]["rho"])
    assert (matched.dataset["matched_ar_feature"].sel(layer=0).values == np.argsort(perm)).all()


def test_crosslayer_probes_and_lineage(built: Built, inputs: Inputs, out_dir: Path) -> None:
    P.bias_step(inputs, BiasConfig(bootstrap=100), out_dir)
    decoders = {la: built.saes[la].W_dec for la in (0, 1)}
    path = P.crosslayer_step(inputs, CrossLayerConfig(folds=3, lineage_top=3), out_dir, decoders=decoders)
    result = json.loads(path.read_text())["layers"]
    en0 = result["0"]["en"]
    assert en0["probe_sae"]["accuracy"] > 0.9 and en0["probe_sae"]["chance_accuracy"] == 0.5
    assert en0["probe_raw"]["accuracy"] > 0.9 and en0["probe_raw"]["n_features"] == 16
    assert en0["n_significant"] > 0 and en0["max_abs_d"] > 2
    assert len(en0["lineage"]) == 6 and "lineage" not in result["1"]["en"]
    assert {"next_feature", "cosine", "next_d", "next_q"} <= set(en0["lineage"][0])
    ds = read_analysis(inputs.store, "crosslayer")
    assert float(ds["probe_sae_accuracy"].sel(layer=0, language="en")) == en0["probe_sae"]["accuracy"]


def test_interpret_visual_qualitative(built: Built, inputs: Inputs, out_dir: Path) -> None:
    P.bias_step(inputs, BiasConfig(bootstrap=0), out_dir)
    config = InspectConfig(n_features=2, top_k=4, n_samples=2, features_per_sample=3, image_size=32)
    encoders = {la: built.saes[la].encode for la in (0, 1)}
    tops = P.top_samples_step(inputs, config, encoders=encoders, layers=[0], languages=["en"])
    interp = json.loads(P.interpret_step(inputs, tops, config, out_dir, decode=None).read_text())
    first = interp["features"][0]
    assert first["direction"] == "male" and first["feature"] in MALE_PLANTED
    assert all(s["gender"] == "male" for s in first["top_samples"])
    assert first["activation_share"]["image"] == pytest.approx(1.0)
    assert first["top_samples"][0]["tokens"][0]["token"].startswith("<image ")
    assert np.asarray(first["histogram"]["counts"]).shape == (2, 2, config.bins)
    assert "male-biased" in first["description"]

    visual = json.loads(P.visual_step(inputs, tops, config, out_dir).read_text())
    ds = read_analysis(inputs.store, "visual")
    assert ds["map"].shape == (4, 4, 4, 4)  # 2 male + 2 female features, 4 samples, 4 x 4 grid
    assert ds["direction"].values.tolist() == ["male", "male", "female", "female"]
    for i, direction in enumerate(ds["direction"].values):
        mean = ds["mean_map"].values[i].ravel()
        cells = MALE_CELLS if direction == "male" else FEMALE_CELLS
        assert mean[list(cells)].sum() > 0.9 * mean.sum()  # the map lights up where the signal was planted
    assert all(Path(r["png"]).is_file() for r in visual["features"])

    qual = json.loads(P.qualitative_step(inputs, config, out_dir, layers=[0], languages=["en"]).read_text())
    rows = qual["rows"]
    assert len({r["sample"] for r in rows}) == 4
    assert all(r["q"] < 0.05 and r["activation"] > 0 for r in rows)
    described = [r for r in rows if r["interpretation"]]
    assert described and "biased" in described[0]["interpretation"]
    assert (out_dir / "qualitative.md").read_text().count("## s") == 4


def test_inspection_with_nothing_significant_writes_empty_results(tmp_path: Path) -> None:
    built = build_store(tmp_path, amplitude=0.0, layers=(0,), languages=("en",))
    inputs = open_inputs(built.store.path)
    out = tmp_path / "out"
    bias = json.loads(P.bias_step(inputs, BiasConfig(), out).read_text())
    assert bias["layers"]["0"]["n_significant"] == 0 and bias["layers"]["0"]["male_biased_features"] == []
    config = InspectConfig(top_k=3)
    tops = P.top_samples_step(inputs, config, encoders={0: built.saes[0].encode})
    assert json.loads(P.interpret_step(inputs, tops, config, out, decode=None).read_text())["features"] == []
    assert json.loads(P.visual_step(inputs, tops, config, out).read_text())["features"] == []
    assert json.loads(P.qualitative_step(inputs, config, out).read_text())["rows"] == []
    given = P.top_samples_step(inputs, config, encoders={0: built.saes[0].encode}, given=[7])
    assert given[(0, "en")].direction == ["given"] and given[(0, "en")].samples.shape == (1, 3)
    with pytest.raises(SaeStoreError, match=r"features \[99\] are out of range: the SAE has features 0..31"):
        P.top_samples_step(inputs, config, encoders={0: built.saes[0].encode}, given=[99])
