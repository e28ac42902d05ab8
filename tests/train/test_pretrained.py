"""Pretrained SAEs as inputs: folders in the SAELens, sparsify, Gemma Scope and Gemma Scope 2 layouts
found layer by layer, then encode -> analyze -> report on them; refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sae_store.errors import SaeStoreError
from sae_store.roles import TokenRole
from sae_store.store import schema as S
from sae_store.store.schema import FEATURES
from sae_store.train.config import DataConfig, SaeConfig
from sae_store.train.data import StoreDataProvider
from sae_store.train.discovery import DEAD_METRICS, find_saes
from sae_store.train.formats import load_sae
from sae_store.train.sae import build_sae
from sae_store_cli.main import main

D_IN, D_SAE = 16, 32


def _weights(layer: int, d_in: int = D_IN, d_sae: int = D_SAE) -> dict[str, torch.Tensor]:
    """A JumpReLU SAE's tensors (SAELens names) that differ per layer."""
    sae = build_sae(SaeConfig(architecture="jumprelu", d_in=d_in, d_sae=d_sae), seed=layer)
    with torch.no_grad():
        sae.threshold.fill_(0.05)
        sae.b_enc.fill_(0.01)
    return {k: v.detach().clone().contiguous() for k, v in sae.state_dict().items()}


def _saelens(root: Path, layer: int, name: str = "layer_{L}", **tensors_kw) -> Path:
    folder = root / name.format(L=layer)
    folder.mkdir(parents=True)
    save_file(_weights(layer, **tensors_kw), str(folder / "sae_weights.safetensors"))
    d_sae = tensors_kw.get("d_sae", D_SAE)
    cfg = {"architecture": "jumprelu", "d_in": D_IN, "d_sae": d_sae, "apply_b_dec_to_input": True}
    (folder / "cfg.json").write_text(json.dumps({**cfg, "metadata": {"model_name": "tiny-gemma3"}}))
    return folder


def _sparsify(root: Path, layer: int, name: str = "layers.{L}") -> Path:
    folder = root / name.format(L=layer)
    folder.mkdir(parents=True)
    sae = build_sae(SaeConfig(architecture="topk", d_in=D_IN, d_sae=D_SAE, k=4), seed=layer)
    tensors = {"encoder.weight": sae.W_enc.detach().T.contiguous(), "encoder.bias": sae.b_enc.detach(),
               "W_dec": sae.W_dec.detach().clone(), "b_dec": sae.b_dec.detach()}  # fmt: skip
    save_file(tensors, str(folder / "sae.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"activation": "topk", "k": 4, "d_in": D_IN}))
    return folder


def _gemma_scope(root: Path, layer: int, l0: int = 5) -> Path:
    """Gemma Scope: layer_<L>/width_<W>/average_l0_<N>/params.npz (lower-case names, no b_dec subtraction)."""
    folder = root / f"layer_{layer}" / "width_32" / f"average_l0_{l0}"
    folder.mkdir(parents=True)
    w = _weights(layer)
    np.savez(folder / "params.npz", **{k.lower(): v.numpy() for k, v in w.items()})
    return folder


def _gemma_scope_2(root: Path, layer: int, l0: str = "medium") -> Path:
    """Gemma Scope 2: resid_post/layer_<L>_width_<W>_l0_<band>/params.safetensors + config.json."""
    folder = root / "resid_post" / f"layer_{layer}_width_32_l0_{l0}"
    folder.mkdir(parents=True)
    save_file({k.lower(): v for k, v in _weights(layer).items()}, str(folder / "params.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_name": "google/gemma-3-4b-it"}))
    return folder


def test_find_saes_in_every_layout(tmp_path):
    for layer in (0, 1):
        _saelens(tmp_path / "saelens", layer)
        _sparsify(tmp_path / "sparsify", layer)
        _gemma_scope(tmp_path / "gs", layer)
        _gemma_scope_2(tmp_path / "gs2", layer, "medium")
        _gemma_scope_2(tmp_path / "gs2", layer, "big")
    assert find_saes(tmp_path / "saelens") == {L: tmp_path / "saelens" / f"layer_{L}" for L in (0, 1)}
    assert find_saes(tmp_path / "sparsify", [1]) == {1: tmp_path / "sparsify" / "layers.1"}
    gs = find_saes(tmp_path / "gs")
    assert gs == {L: tmp_path / "gs" / f"layer_{L}" / "width_32" / "average_l0_5" for L in (0, 1)}
    assert load_sae(gs[1]).format == "gemma_scope"
    with pytest.raises(SaeStoreError, match=r"layer 0 has 2 SAEs under '.*gs2' .*pick one per layer"):
        find_saes(tmp_path / "gs2")
    picked = find_saes(str(tmp_path / "gs2" / "resid_post" / "layer_{L}_width_32_l0_medium"))
    assert picked == {L: tmp_path / "gs2" / "resid_post" / f"layer_{L}_width_32_l0_medium" for L in (0, 1)}
    assert find_saes(str(tmp_path / "gs2" / "resid_post" / "layer_{L}_*_l0_big"), [0])[0].name.endswith("big")


def test_refusals(tmp_path):
    _saelens(tmp_path / "saes", 0)
    with pytest.raises(
        SaeStoreError, match=r"no SAE for layer\(s\) \[3\] in '.*saes' \(it has layers \[0\]\)"
    ):
        find_saes(tmp_path / "saes", [0, 3])
    (tmp_path / "odd" / "checkpoints").mkdir(parents=True)
    (tmp_path / "odd" / "checkpoints" / "model.pt").write_bytes(b"")
    with pytest.raises(
        SaeStoreError, match=r"holds no SAE in a known layout \(tried layer_\{L\}.*accepted layouts"
    ):
        find_saes(tmp_path / "odd")
    with pytest.raises(SaeStoreError, match=r"no folder '.*nowhere' for the SAE pattern"):
        find_saes(str(tmp_path / "nowhere" / "layer_{L}"))


@pytest.mark.parametrize("layout", ["saelens", "sparsify", "gemma_scope", "gemma_scope_2"])
def test_encode_analyze_report_on_pretrained_saes(filled_store, tmp_path, capsys, layout):
    store = filled_store()
    make = {
        "saelens": _saelens,
        "sparsify": _sparsify,
        "gemma_scope": _gemma_scope,
        "gemma_scope_2": _gemma_scope_2,
    }
    root = tmp_path / layout
    for layer in (0, 1):
        make[layout](root, layer)
    spec = (
        str(root / "resid_post" / "layer_{L}_width_32_l0_medium") if layout == "gemma_scope_2" else str(root)
    )
    assert main(["encode", str(store.path), "--saes", spec, "--no-progress"]) == 0, capsys.readouterr().err
    attrs = store.dataset(group=FEATURES).attrs
    fmt = {"saelens": "saelens", "sparsify": "sparsify"}.get(layout, "gemma_scope")
    assert {attrs["saes"][str(L)]["format"] for L in (0, 1)} == {fmt}
    expected = load_sae(find_saes(spec)[1]).sae
    x = np.asarray(store.array(S.ACTIVATIONS)[1, 0, 0], dtype=np.float32)
    roles = np.asarray(store.array(S.TOKEN_ROLE)[0, 0])
    x = x[np.isin(roles, [TokenRole.IMAGE, TokenRole.TEXT]) & np.isfinite(x).all(1)]
    with torch.no_grad():
        mean = expected.encode(torch.from_numpy(x)).double().mean(0).numpy()
    got = (
        store.dataset(group=FEATURES).feature_mean.sel(layer=1, language=store.layout.languages[0]).values[0]
    )
    np.testing.assert_allclose(got, mean, rtol=1e-5, atol=1e-6)

    results = tmp_path / "results"
    assert main(["analyze", "bias", str(store.path), "--results", str(results), "--bootstrap", "20",
                 "--permutations", "5", "--cluster", "none"]) == 0, capsys.readouterr().err  # fmt: skip
    assert main(["analyze", "interpret", str(store.path), "--results", str(results), "--saes", spec,
                 "--n-features", "2"]) == 0, capsys.readouterr().err  # fmt: skip
    report = tmp_path / "report"
    assert main(["report", str(store.path), "--out", str(report), "--saes", str(root),
                 "--results", str(results)]) == 0, capsys.readouterr().err  # fmt: skip
    # the quality table has a row per layer, measured by encode on the held-out samples
    rows = json.loads((report / "summary.json").read_text())["sections"]["sae_quality"]["per_layer"]
    assert [r["layer"] for r in rows] == [0, 1]
    for row in rows:
        want = _held_out_quality(store, row["layer"], load_sae(find_saes(spec)[row["layer"]]).sae)
        assert row["measured by"] == "encode" and row["format"] == fmt
        assert row["held-out tokens"] == want["tokens"]
        got = [row["fvu"], row["l0"], row[DEAD_METRICS["dead_fraction"][0]]]
        np.testing.assert_allclose(got, [want["fvu"], want["l0"], want["dead_fraction"]], rtol=1e-5)


def _held_out_quality(store, layer: int, sae) -> dict[str, float]:
    """FVU, L0 and dead fraction of ``sae`` on the held-out samples' image and text tokens, by hand."""
    held_out = StoreDataProvider(store, DataConfig(layer=layer, batch_size=1)).val_samples
    li = store.layer_index(layer)
    xs = []
    for gi in range(len(store.layout.languages)):
        for s in held_out:
            x = np.asarray(store.array(S.ACTIVATIONS)[li, gi, s], dtype=np.float64)
            roles = np.asarray(store.array(S.TOKEN_ROLE)[gi, s])
            xs.append(x[np.isin(roles, [TokenRole.IMAGE, TokenRole.TEXT]) & np.isfinite(x).all(1)])
    x = np.concatenate(xs)
    with torch.no_grad():
        z = sae.encode(torch.from_numpy(x).float())
        err = (sae.decode(z).double().numpy() - x) ** 2
    active = z.numpy() > 0
    return {
        "tokens": len(x),
        "fvu": err.sum() / ((x - x.mean(0)) ** 2).sum(),
        "l0": active.sum(1).mean(),
        "dead_fraction": (~active.any(0)).mean(),
    }


def test_encode_refuses_a_pretrained_sae_of_another_width(filled_store, tmp_path, capsys):
    store = filled_store()
    _saelens(tmp_path / "wide", 0, d_in=24)
    assert main(["encode", str(store.path), "--saes", str(tmp_path / "wide"), "--no-progress"]) == 2
    assert "SAEs with d_in {0: 24} do not fit the store's hidden size 16" in capsys.readouterr().err
    assert FEATURES not in {name for name, _ in store.zarr_group().groups()}  # nothing written
