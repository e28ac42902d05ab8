"""SAEs as published and as encoded: the layouts of SAELens uploads, sparsify on Gemma 3's VLM and a
Gemma Scope repository with several L0s per layer (one choice for every layer); layers without an
SAE; results that become stale when the features are encoded again with other SAEs."""

from __future__ import annotations

import json

import pytest

from sae_store.errors import SaeStoreError, StaleResultError
from sae_store.store.results import has_group, read_group, stale_reason
from sae_store.train.discovery import find_saes
from sae_store_cli.main import main
from tests.train.test_pretrained import _gemma_scope, _gemma_scope_2, _saelens, _sparsify


def test_published_folders_are_found_without_a_pattern(tmp_path):
    for layer in (0, 1):
        _saelens(tmp_path / "hub", layer, name="blocks.{L}.hook_resid_post")
        _saelens(tmp_path / "hub", layer, name="blocks.{L}.hook_mlp_out")  # not the residual stream
        _sparsify(tmp_path / "vlm", layer, name="language_model.layers.{L}")
        _sparsify(tmp_path / "vlm2", layer, name="model.language_model.layers.{L}")
    assert find_saes(tmp_path / "hub") == {
        L: tmp_path / "hub" / f"blocks.{L}.hook_resid_post" for L in (0, 1)
    }
    assert find_saes(tmp_path / "vlm") == {L: tmp_path / "vlm" / f"language_model.layers.{L}" for L in (0, 1)}
    assert find_saes(tmp_path / "vlm2", [1]) == {1: tmp_path / "vlm2" / "model.language_model.layers.1"}


def test_one_choice_picks_the_sae_of_every_layer(tmp_path):
    root = tmp_path / "gemma-scope"
    # L0s differ from layer to layer, as in Gemma Scope: no {L} pattern can name them
    for layer, l0s in {0: (22, 71, 150), 1: (19, 82, 176)}.items():
        for l0 in l0s:
            _gemma_scope(root, layer, l0)
    with pytest.raises(SaeStoreError) as e:
        find_saes(root)
    assert str(e.value) == (
        f"layer 0 has 3 SAEs under {str(root)!r} (layer_0/width_32/average_l0_150, "
        "layer_0/width_32/average_l0_22, layer_0/width_32/average_l0_71); pick one per layer with a choice "
        f"after '#', e.g. --saes '{root}#width=32,l0=150' (l0=N picks the L0 closest to N, l0=min or "
        "l0=max the sparsest or densest), or pass a pattern, e.g. "
        f"--saes '{root}/layer_{{L}}/width_32/average_l0_150'"
    )

    def picked(choice: str) -> dict[int, str]:
        return {layer: path.name for layer, path in find_saes(f"{root}#{choice}").items()}

    assert picked("width=32,l0=100") == {0: "average_l0_71", 1: "average_l0_82"}
    assert picked("l0=min") == {0: "average_l0_22", 1: "average_l0_19"}
    assert picked("l0=max") == {0: "average_l0_150", 1: "average_l0_176"}
    assert picked("l0=20") == {0: "average_l0_22", 1: "average_l0_19"}
    # Gemma Scope 2 names its sparsities
    for layer in (0, 1):
        for band in ("small", "medium", "big"):
            _gemma_scope_2(tmp_path / "gs2", layer, band)
    found = find_saes(f"{tmp_path / 'gs2'}#l0=medium")
    assert {L: p.name for L, p in found.items()} == {L: f"layer_{L}_width_32_l0_medium" for L in (0, 1)}


def test_choice_refusals(tmp_path):
    root = tmp_path / "gs"
    _gemma_scope(root, 0, 71)
    with pytest.raises(SaeStoreError) as e:
        find_saes(f"{root}#depth=3")
    assert str(e.value) == (
        f"--saes '{root}#depth=3': the choice 'depth=3' is not understood; after '#' give width=VALUE "
        "and/or l0=VALUE separated by commas, e.g. 'DIR#width=16k,l0=100' (l0: a number for the closest "
        "L0, min, max, or a name such as medium)"
    )
    with pytest.raises(SaeStoreError) as e:
        find_saes(f"{root}#width=16k")
    assert str(e.value) == (
        f"no SAE of layer 0 matches the choice '#width=16k' in {str(root)!r}; it has "
        "layer_0/width_32/average_l0_71"
    )


def test_a_layer_without_an_sae_is_left_out_and_named(filled_store, tmp_path, capsys, caplog):
    store = filled_store()  # layers 0 and 1
    _saelens(tmp_path / "saes", 0)
    saes = str(tmp_path / "saes")
    assert main(["encode", str(store.path), "--saes", saes, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert (
        f"not encoded: layers 1 have no SAE in {saes!r}; train them (`sae-store train {store.path} --layer L "
        f"--out {saes}`) and run encode again"
    ) in out
    results = tmp_path / "results"
    argv = ["analyze", "bias", str(store.path), "--results", str(results), "--bootstrap", "20",
            "--permutations", "0", "--cluster", "none"]  # fmt: skip
    with caplog.at_level("WARNING", logger="sae_store.analyze.context"):
        assert main(argv) == 0
    assert [r.getMessage() for r in caplog.records if r.name == "sae_store.analyze.context"] == [
        "layers 1 have no encoded features (they had no SAE when `encode` ran): analysing layers 0; to "
        f"include them, train their SAEs (`sae-store train {store.path} --layer L --out SAE_DIR`) and encode "
        f"them (`sae-store encode {store.path} --saes SAE_DIR --layers 1`)"
    ]
    bias = json.loads((results / "comprehensive_analysis_results.json").read_text())
    assert list(bias["layers"]) == ["0"]
    assert read_group(store, "analysis/bias").layer.values.tolist() == [0]


def test_results_of_other_saes_are_stale_after_encoding_again(filled_store, tmp_path, capsys):
    store = filled_store()
    for layer in (0, 1):
        _saelens(tmp_path / "wide", layer, d_sae=32)
        _saelens(tmp_path / "narrow", layer, d_sae=16)
    results = tmp_path / "results"
    common = ["--results", str(results), "--cluster", "none"]
    bias = ["analyze", "bias", str(store.path), *common, "--bootstrap", "20", "--permutations", "0"]
    assert main(["encode", str(store.path), "--saes", str(tmp_path / "wide"), "--no-progress"]) == 0
    assert main(bias) == 0
    assert main(["analyze", "crosslingual", str(store.path), *common]) == 0
    # another width: the crosslingual and bias results of 32 features no longer describe the features
    argv = ["encode", str(store.path), "--saes", str(tmp_path / "narrow"), "--overwrite", "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    reason = (
        f"'analysis/crosslingual' in the store {str(store.path)!r} was computed from other SAEs than the "
        "features now hold: layers [0, 1] were encoded again with other SAEs (or not at all) since"
    )
    with pytest.raises(StaleResultError) as e:
        read_group(store, "analysis/crosslingual")
    assert str(e.value) == f"{reason}; run the step that wrote it again"
    # a step that reads a stale result refuses, naming the command that renews it
    assert main(["analyze", "crosslayer", str(store.path), *common]) == 2
    bias_reason = reason.replace("crosslingual", "bias")
    assert capsys.readouterr().err.strip() == (
        f"sae-store analyze crosslayer: error: {bias_reason}; run `sae-store analyze bias {store.path}` again"
    )
    # the report does not crash: the stale results are listed with the commands that renew them
    report = tmp_path / "report"
    assert main(["report", str(store.path), "--out", str(report), "--results", str(results)]) == 0
    steps = json.loads((report / "summary.json").read_text())["sections"]["completeness"]["steps"]
    by_step = {s["step"]: s for s in steps}
    assert by_step["analyze crosslingual"]["state"] == "not run"
    assert by_step["analyze crosslingual"]["detail"] == reason
    assert by_step["analyze crosslingual"]["commands"][0].startswith("sae-store analyze crosslingual ")
    assert not has_group(store, "analysis/crosslayer")  # nothing written on refusal
    # rerunning renews them
    assert main(bias) == 0
    assert read_group(store, "analysis/bias").sizes["feature"] == 16
    # the same SAEs summarising other token roles make them stale too
    argv = ["encode", str(store.path), "--saes", str(tmp_path / "narrow"), "--overwrite", "--roles", "image"]
    assert main([*argv, "--no-progress"]) == 0
    assert stale_reason(store, "analysis/bias") == (
        f"'analysis/bias' in the store {str(store.path)!r} was computed from features of the token roles "
        "['image', 'text']; they now summarise ['image']"
    )
