"""``evaluate`` on an extracted store of the tiny Gemma 3: SAEs whose numbers are known by construction,
the stored metrics against a direct computation, a pretrained-layout copy, results and resumption."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sae_store.evaluate import EvaluateConfig, evaluate_store, read_evaluations
from sae_store.evaluate.results import RECONSTRUCTION_METRICS, group_path
from sae_store.evaluate.tokens import evaluated_samples
from sae_store.models.config import ModelRunConfig
from sae_store.roles import TokenRole
from sae_store.store import open_store
from sae_store.store import schema as S
from sae_store.train.discovery import find_saes
from sae_store.train.export import export_saes
from sae_store.train.formats import load_sae

from .conftest import LAYERS

CPU = ModelRunConfig(device="cpu", dtype="float32")
#: Every sample (the store's 14 leave too few held-out ones for the probes), model runs of 6 samples.
ALL = EvaluateConfig(samples="all", max_samples=6, probe_k=(1, 2), folds=2)


def _metric(ds, var: str, **where: object) -> np.ndarray:
    return np.asarray(ds[var].sel(where).values)


def test_identity_and_zero_saes_score_one_and_zero(
    store_copy: Path, sae_sets: dict[str, Path], tmp_path: Path
) -> None:
    store = open_store(store_copy)
    specs = [str(sae_sets["identity"]), str(sae_sets["zero"])]
    # layer 1: the tiny model's last layer attends through a 16-token window only, so after layer 2 the
    # image tokens no longer reach the caption (an image splice there changes nothing: a NaN score)
    outcome = evaluate_store(
        store, specs, ALL, layers=[1], out_dir=tmp_path, model_config=CPU, progress=False
    )
    assert outcome.behaviour == "measured" and outcome.evaluated == {"identity": [1], "zero": [1]}
    evals = read_evaluations(store)
    ident, zero = evals["identity"].sel(layer=1), evals["zero"].sel(layer=1)
    ev = _metric(ident, "reconstruction", metric="explained_variance")
    assert np.allclose(ev, 1.0, atol=1e-12)  # every (language, role) split
    for score in (
        "ce_loss_score",
        "kl_div_score",
        "ce_loss_score_mean_ablation",
        "kl_div_score_mean_ablation",
    ):
        assert np.allclose(_metric(ident, "behaviour", behaviour_metric=score), 1.0, atol=1e-5), score
        assert np.allclose(_metric(ident, "behaviour_total", behaviour_metric=score), 1.0, atol=1e-5), score
    # a zero reconstruction is the zero-ablation baseline itself
    for score in ("ce_loss_score", "kl_div_score"):
        assert np.allclose(_metric(zero, "behaviour", behaviour_metric=score), 0.0, atol=1e-9), score
    # its explained variance is 1 - sum x^2 / sum (x - mean)^2: 0 only for centred data (these are not)
    want = _direct(store_copy, sae_sets["zero"] / "layer_1", 1, "en", TokenRole.IMAGE)["explained_variance"]
    got = float(zero["reconstruction"].sel(language="en", role="image", metric="explained_variance"))
    assert got == pytest.approx(want, rel=1e-6) and got < -0.5
    tokens = _metric(ident, "behaviour_total", behaviour_metric="tokens")
    assert (tokens > 0).all()


def _direct(store_path: Path, sae_dir: Path, layer: int, language: str, role: TokenRole) -> dict[str, float]:
    """The split's metrics from activations read with xarray and the SAE applied here."""
    import xarray as xr

    store = open_store(store_path)
    samples = evaluated_samples(store, ALL)
    ds = xr.open_zarr(store_path)
    acts = ds.activations.sel(layer=layer, language=language).values[samples]
    roles = ds.token_role.sel(language=language).values[samples]
    x = torch.from_numpy(acts[roles == int(role)].astype(np.float64))
    sae = load_sae(sae_dir).sae.double()
    x_hat = sae.decode(sae.encode(x))
    err = (x - x_hat).pow(2).sum()
    return {
        "tokens": len(x),
        "explained_variance": float(1 - err / (x - x.mean(0)).pow(2).sum()),
        "l0": float((sae.encode(x) > 0).sum(1).double().mean()),
    }


def test_stored_metrics_match_a_direct_computation(
    store_copy: Path, sae_sets: dict[str, Path], tmp_path: Path
) -> None:
    store = open_store(store_copy)
    config = EvaluateConfig(samples="all", max_samples=6, behaviour=False, probe_k=(1,), folds=2)
    evaluate_store(store, [str(sae_sets["topk"])], config, layers=[1], out_dir=tmp_path, progress=False)
    ds = read_evaluations(store)["topk"].sel(layer=1)
    for language in ("en", "ar"):
        for role in (TokenRole.IMAGE, TokenRole.TEXT):
            want = _direct(store_copy, sae_sets["topk"] / "layer_1", 1, language, role)
            got = ds["reconstruction"].sel(language=language, role=role.name.lower())
            for key, value in want.items():
                assert float(got.sel(metric=key)) == pytest.approx(value, rel=1e-5), (language, role, key)


def test_a_pretrained_layout_copy_gives_the_original_numbers(
    store_copy: Path, sae_sets: dict[str, Path], tmp_path: Path
) -> None:
    export_saes(find_saes(sae_sets["topk"]), tmp_path / "sparsify", "sparsify", progress=False)
    store = open_store(store_copy)
    specs = [str(sae_sets["topk"]), f"copy={tmp_path / 'sparsify'}"]
    evaluate_store(store, specs, ALL, layers=[2], out_dir=tmp_path / "out", model_config=CPU, progress=False)
    evals = read_evaluations(store)
    a, b = evals["topk"], evals["copy"]
    for var in ("reconstruction", "reconstruction_total", "density_histogram", "behaviour", "probing"):
        np.testing.assert_allclose(
            a[var].values, b[var].values, rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=var
        )
    assert json.loads(str(b["sae_record"].sel(layer=2).item()))["format"] == "sparsify"


def test_results_follow_saebench_layout_and_a_rerun_resumes(
    store_copy: Path, sae_sets: dict[str, Path], tmp_path: Path
) -> None:
    store = open_store(store_copy)
    spec = [str(sae_sets["topk"])]
    first = evaluate_store(store, spec, ALL, out_dir=tmp_path, model_config=CPU, progress=False)
    assert first.evaluated == {"topk": list(LAYERS)}
    core = json.loads((tmp_path / "core" / "topk_layer_1_eval_results.json").read_text())
    assert core["eval_type_id"] == "core" and core["sae_lens_release_id"] == "topk"
    assert core["sae_cfg_dict"]["architecture"] == "topk" and core["sae_cfg_dict"]["d_sae"] == 256
    metrics = core["eval_result_metrics"]
    categories = ("model_behavior_preservation", "model_performance_preservation", "reconstruction_quality")
    assert set(metrics) == {*categories, "shrinkage", "sparsity", "token_stats", "misc_metrics"}
    assert all(not isinstance(v, dict) for cat in metrics.values() for v in cat.values())  # flat, as SAEBench
    ds = read_evaluations(store)["topk"].sel(layer=1)
    stored = float(ds["reconstruction_total"].sel(role="all", metric="explained_variance"))
    assert metrics["reconstruction_quality"]["explained_variance"] == pytest.approx(stored)
    assert len(core["eval_result_details"]) == 256
    splits = {f"{g}/{r}" for g in ("en", "ar") for r in ("image", "text", "special", "all")}
    assert set(core["eval_result_unstructured"]["splits"]) == splits
    probing = json.loads((tmp_path / "sparse_probing" / "topk_layer_1_eval_results.json").read_text())
    assert set(probing["eval_result_metrics"]["sae"]) == {
        "sae_top_1_test_accuracy",
        "sae_top_2_test_accuracy",
        "sae_test_accuracy",
    }
    assert [d["dataset_name"] for d in probing["eval_result_details"]][:2] == [
        "gender/en/image",
        "gender/ar/image",
    ]
    again = evaluate_store(store, spec, ALL, out_dir=tmp_path, model_config=CPU, progress=False)
    assert again.evaluated == {} and again.done_before == {"topk": list(LAYERS)}
    assert list(first.best["layer"]) == list(LAYERS) and set(first.best["best"]) == {"topk"}
    assert list(read_evaluations(store)["topk"][S.LAYER].values) == list(LAYERS)
    assert len(RECONSTRUCTION_METRICS) == ds.sizes["metric"]
    assert group_path("topk") == "evaluation/topk"


def test_replayed_runs_equal_full_forward_passes(tiny_model_dir: Path, sae_sets: dict[str, Path]) -> None:
    """A run replayed from the clean pass (no vision tower, no layer up to the spliced one) gives the
    log-probabilities of a full forward pass with the same splice."""
    from PIL import Image

    from sae_store.evaluate.behaviour import _reconstruct, _replace_at
    from sae_store.evaluate.replay import Replay
    from sae_store.intervene.batches import caption_log_probs, position_mask, prompt_batch, teacher_forced
    from sae_store.intervene.hooks import layer_hook
    from sae_store.models.loader import load_model

    loaded = load_model(tiny_model_dir, device="cpu", dtype="float32")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)) for _ in range(3)]
    captions = [[int(t) for t in rng.integers(300, 600, n)] for n in (5, 9, 2)]
    tf = teacher_forced(loaded, prompt_batch(loaded, images, "Describe the person."), captions)
    sae = load_sae(sae_sets["topk"] / "layer_1").sae
    layers = loaded.adapter.decoder_layers(loaded.model)
    for layer in (0, 1, 3):
        replay = Replay(loaded.model, layers, layer)
        with replay.record():
            clean = caption_log_probs(loaded, tf)
        torch.testing.assert_close(clean, caption_log_probs(loaded, tf), rtol=0, atol=0)
        mask = position_mask(loaded, tf.inputs, "all").prompt
        splice = _replace_at(mask, _reconstruct(sae))
        with layer_hook(layers[layer], splice):
            full = caption_log_probs(loaded, tf)
        with replay.replay(), layer_hook(layers[layer], splice):
            replayed = caption_log_probs(loaded, tf)
        torch.testing.assert_close(replayed, full, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(full, clean, atol=1e-3)  # the splice changes the output
        # afterwards the model computes everything again
        assert all("forward" not in vars(m) for m in layers)
        torch.testing.assert_close(caption_log_probs(loaded, tf), clean, rtol=0, atol=0)
