"""What ``evaluate`` does with bad input: one clear error, or the part it can measure and a line naming the
rest (a layer missing from a set, a split without tokens, a store without its model folder)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sae_store.evaluate import EvaluateConfig, evaluate_store, read_evaluations
from sae_store.evaluate.results import NO_TOKENS
from sae_store.roles import TokenRole
from sae_store.store import ActivationStore, open_store
from sae_store.store import schema as S
from sae_store.train.config import SaeConfig
from sae_store.train.formats import save_sae
from sae_store.train.sae import build_sae
from sae_store_cli.main import main
from tests.train.conftest import fill_store

NO_MODEL = (
    "skipped: no model folder at 'synthetic' (the one the store records); pass --model DIR (the model the "
    "store was extracted with) to measure CE loss recovered and the KL score"
)


def _saes(root: Path, layers: list[int], d_in: int) -> Path:
    for layer in layers:
        save_sae(
            build_sae(SaeConfig(architecture="topk", d_in=d_in, d_sae=32, k=4), seed=layer),
            root / f"layer_{layer}",
        )
    return root


@pytest.fixture
def synthetic(make_store: Callable[..., ActivationStore]) -> ActivationStore:
    """A store of 20 samples (hidden 16, layers 0 and 1, no model folder) whose Arabic prompts have no
    special token (every special position relabelled text)."""
    store = make_store(n_samples=20, samples_per_shard=4, layers=[0, 1], hidden_size=16)
    fill_store(store)
    gi = store.language_index("ar")
    roles = np.asarray(store.array(S.TOKEN_ROLE)[...])[gi]
    roles[roles == int(TokenRole.SPECIAL)] = int(TokenRole.TEXT)
    for b in store.blocks:
        store.write(S.TOKEN_ROLE, roles[b.start : b.stop], start=b.start, language="ar")
    return store


def test_a_store_without_model_and_a_split_without_tokens(
    synthetic: ActivationStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saes = _saes(tmp_path / "saes", [0, 1], 16)
    code = main(["evaluate", str(synthetic.path), "--saes", str(saes), "--sample-set", "all", "--folds", "2",
                 "--results", str(tmp_path / "out"), "--no-progress"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert f"model runs (CE loss recovered, KL score): {NO_MODEL}" in out
    assert "saes layer 0: no tokens in ar/special (those splits have no metrics)" in out
    ds = read_evaluations(synthetic)["saes"].sel(layer=0)
    split = ds["reconstruction"].sel(language="ar", role="special")
    assert float(split.sel(metric="tokens")) == 0
    assert np.isnan(split.drop_sel(metric="tokens").values).all()
    assert (
        float(ds["reconstruction"].sel(language="en", role="special", metric="tokens")) == 40
    )  # 2 per sample
    assert np.isfinite(ds["reconstruction_total"].sel(role="all", metric="explained_variance"))
    assert np.isnan(ds["behaviour_total"].values).all()
    record = json.loads(str(ds["sae_record"].item()))
    assert record["behaviour"] == NO_MODEL and record["empty_splits"] == ["ar/special"]
    core = json.loads((tmp_path / "out" / "evaluate" / "core" / "saes_layer_0_eval_results.json").read_text())
    assert core["eval_result_unstructured"]["splits"]["ar/special"] == {"tokens": 0, "note": NO_TOKENS}
    assert core["eval_result_metrics"]["model_performance_preservation"]["ce_loss_score"] == -1


def test_a_layer_missing_from_one_set_is_evaluated_where_present(
    synthetic: ActivationStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full, partial = _saes(tmp_path / "full", [0, 1], 16), _saes(tmp_path / "partial", [1], 16)
    options = [
        "--no-behaviour",
        "--sample-set",
        "all",
        "--folds",
        "2",
        "--results",
        str(tmp_path / "out"),
        "--no-progress",
    ]
    code = main(["evaluate", str(synthetic.path), "--saes", str(full), "--saes", str(partial), *options])
    out = capsys.readouterr().out
    assert code == 0
    assert "partial: no SAE for layer(s) [0], not evaluated there" in out
    assert "full: evaluated layer(s) [0, 1]" in out and "partial: evaluated layer(s) [1]" in out
    evals = read_evaluations(synthetic)
    assert evals["full"]["layer"].values.tolist() == [0, 1] and evals["partial"]["layer"].values.tolist() == [
        1
    ]
    assert re.search(r"layer 0: full \(explained_variance [-0-9.]+\)", out)  # the only set there


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--saes", "{small}"],
            "SAE set 'small' ({small}) reads vectors of d_in {{0: 8, 1: 8}} (by layer), but the store's "
            "residual stream has width 16; use SAEs trained on this model's activations",
        ),
        (
            ["--saes", "{good}", "--saes", "{other}/good"],
            "two SAE sets are named 'good' ('{good}' and '{other}/good'); name them apart with "
            "--saes NAME=DIR",
        ),
        (
            ["--saes", "{good}", "--layer", "1", "--layers", "0-1"],
            "pass --layer L (one layer, an array task) or --layers SPEC, not both",
        ),
        (
            ["--saes", "{good}", "--layers", "3"],
            "layer 3 is not in the store; it holds layers [0, 1]",
        ),
        (
            ["--saes", "{good}", "--sample-set", "held-out", "--val-fraction", "0"],
            "no samples to evaluate: held-out samples of 20 with val_fraction 0.0; raise --val-fraction or "
            "pass --sample-set all",
        ),
    ],
)
def test_refusals(
    synthetic: ActivationStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    paths = {"small": tmp_path / "small", "good": tmp_path / "good", "other": tmp_path / "other"}
    _saes(paths["small"], [0, 1], 8)
    _saes(paths["good"], [0, 1], 16)
    _saes(paths["other"] / "good", [0, 1], 16)
    argv = [a.format(**paths) for a in args]
    assert main(["evaluate", str(synthetic.path), *argv, "--no-behaviour", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == f"sae-store evaluate: error: {message.format(**paths)}"
    assert not (synthetic.path / "evaluation").exists() or not read_evaluations(synthetic)


def test_a_group_made_with_other_settings_is_refused(synthetic: ActivationStore, tmp_path: Path) -> None:
    saes = str(_saes(tmp_path / "saes", [0], 16))
    config = EvaluateConfig(samples="all", behaviour=False, folds=2)
    evaluate_store(synthetic, [saes], config, layers=[0], out_dir=tmp_path, progress=False)
    other = EvaluateConfig(samples="all", behaviour=False, folds=2, splice=("text",))
    with pytest.raises(Exception) as caught:
        evaluate_store(synthetic, [saes], other, layers=[0], out_dir=tmp_path, progress=False)
    assert str(caught.value) == (
        "evaluation/saes was evaluated with splice ['image', 'all'], this run asks for ['text']; pass "
        "--overwrite to evaluate every layer of the set again, or the settings it was made with"
    )
    done = evaluate_store(
        synthetic, [saes], other, layers=[0], out_dir=tmp_path, overwrite=True, progress=False
    )
    assert done.evaluated == {"saes": [0]}
    assert read_evaluations(open_store(synthetic.path))["saes"]["splice"].values.tolist() == ["text"]
