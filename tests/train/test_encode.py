"""Encoding activations into the store's features group: values, provenance, resume, array tasks."""

from __future__ import annotations

import multiprocessing
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import xarray as xr

from sae_store.errors import ConfigError, IncompleteError, SaeStoreError
from sae_store.roles import TokenRole
from sae_store.store import schema as S
from sae_store.store.groups import delete_group
from sae_store.store.schema import FEATURES
from sae_store.train import encode as encode_module
from sae_store.train.config import EncodeConfig, SaeConfig
from sae_store.train.discovery import find_saes
from sae_store.train.encode import encode_features
from sae_store.train.formats import load_sae, save_sae, sha256_file
from sae_store.train.sae import build_sae
from sae_store_cli.main import main

from .conftest import fill_store


def _save(folder, arch: str = "topk", d_sae: int = 48, d_in: int = 16, seed: int = 0):
    config = SaeConfig(architecture=arch, d_in=d_in, d_sae=d_sae, k=4, decoder_init_norm=1.0)
    sae = build_sae(config, seed=seed)
    with torch.no_grad():
        sae.b_enc.add_(0.05)
    return save_sae(sae, folder, scale=0.1)


@pytest.fixture
def encoded(filled_store, tmp_path):
    store = filled_store()
    saes = tmp_path / "saes"
    _save(saes / "layer_0", "topk")
    _save(saes / "layer_1", "jumprelu", seed=1)
    (saes / "layer_1" / "notes.txt").write_text("an unrelated file")
    (saes / "layer_5").mkdir()  # a folder without an SAE (e.g. training still running) is not picked up
    result = encode_features(store, find_saes(saes), progress=False)
    return store, saes, result


def _expected(store, sae_dir, layer: int, lang: str, roles=("image", "text")):
    sae = load_sae(sae_dir).sae
    root = store.zarr_group()
    acts = np.asarray(root[S.ACTIVATIONS][store.layer_index(layer), store.language_index(lang)])
    token_role = np.asarray(root[S.TOKEN_ROLE][store.language_index(lang)])
    codes = [int(TokenRole[r.upper()]) for r in roles]
    mean, mx, frac, used, role_frac, role_tokens = [], [], [], [], [], []
    for s in range(acts.shape[0]):
        finite = np.isfinite(acts[s]).all(1)
        x = acts[s][np.isin(token_role[s], codes) & finite]
        z = sae.encode(torch.from_numpy(x)).double().numpy()
        used.append(len(x))
        mean.append(z.mean(0) if len(x) else np.full(sae.d_sae, np.nan))
        mx.append(z.max(0) if len(x) else np.full(sae.d_sae, np.nan))
        frac.append((z > 0).mean(0) if len(x) else np.full(sae.d_sae, np.nan))
        per_role = [sae.encode(torch.from_numpy(acts[s][(token_role[s] == c) & finite])) for c in codes]
        role_tokens.append([len(z) for z in per_role])
        role_frac.append([(z > 0).double().mean(0).numpy() for z in per_role])
    return (
        np.array(mean),
        np.array(mx),
        np.array(frac),
        np.array(used),
        np.array(role_frac),
        np.array(role_tokens),
    )


def test_features_match_a_plain_computation(encoded):
    store, saes, result = encoded
    assert result.layers == (0, 1) and result.encoded == 2 * 2 * 6 and result.skipped == 0
    ds = store.dataset(group=FEATURES)
    assert dict(ds.sizes) == {"layer": 2, "language": 2, "sample": 24, "feature": 48, "role": 2}
    assert ds["gender"].values[:2].tolist() == ["male", "female"]  # sample coordinates repeated
    assert bool(ds.complete.all())
    for layer, lang in [(0, "en"), (1, "ar")]:
        mean, mx, frac, used, role_frac, role_tokens = _expected(store, saes / f"layer_{layer}", layer, lang)
        sel = ds.sel(layer=layer, language=lang)
        np.testing.assert_allclose(sel.feature_mean.values, mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(sel.feature_max.values, mx, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(sel.feature_frac.values, frac, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(sel.tokens_used.values, used)
        # per role: the same pass, split by the token's role (image, text)
        assert sel.role_frac.dims == ("sample", "role", "feature") and sel.role.values.tolist() == [
            "image",
            "text",
        ]
        np.testing.assert_allclose(sel.role_frac.values, role_frac, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(sel.role_tokens.values, role_tokens)
        np.testing.assert_array_equal(sel.role_tokens.sum("role").values, used)
        assert 0 < np.count_nonzero(frac) < frac.size  # sparse but not empty
    # plain xarray works on the group too
    plain = xr.open_zarr(store.path, group=FEATURES)
    assert plain.feature_mean.sel(layer=1, language="ar").shape == (24, 48)


def test_provenance_resume_and_roles(encoded):
    store, saes, _ = encoded
    attrs = store.dataset(group=FEATURES).attrs
    assert attrs["roles"] == ["image", "text"] and attrs["d_sae"] == 48 and attrs["n_samples"] == 24
    record = attrs["saes"]["1"]
    assert record["sha256"] == sha256_file(saes / "layer_1" / "sae_weights.safetensors")
    assert record["folder"] == str((saes / "layer_1").resolve())
    assert (record["format"], record["architecture"], record["d_sae"]) == ("sae_store", "jumprelu", 48)
    again = encode_features(store, find_saes(saes), progress=False)
    assert (again.encoded, again.skipped) == (0, 24)
    with pytest.raises(
        ConfigError,
        match=r"the features group was encoded with roles \['image', 'text'\], not "
        r"\['image'\]; pass --roles image,text or start over with --overwrite",
    ):
        encode_features(store, find_saes(saes), EncodeConfig(roles=("image",)), progress=False)
    image_only = encode_features(
        store, find_saes(saes, [0]), EncodeConfig(roles=("image",)), restart=True, progress=False
    )
    assert image_only.encoded == 12
    ds = store.dataset(group=FEATURES)
    assert ds.attrs["roles"] == ["image"] and list(ds.attrs["saes"]) == ["0"]
    assert (ds.tokens_used.sel(layer=0).values == 4).all() and (
        ds.tokens_used.sel(layer=1).values == -1
    ).all()


def test_array_tasks_split_blocks_and_agree_with_one_process(encoded):
    store, saes, _ = encoded
    whole = store.dataset(group=FEATURES).load()
    first = encode_features(store, find_saes(saes), task_index=0, task_count=2, restart=True, progress=False)
    flags = store.read_flags(group=FEATURES)
    assert first.encoded == 2 * 2 * 3 and flags[:, :, :12].all() and not flags[:, :, 12:].any()
    second = encode_features(store, find_saes(saes), task_index=1, task_count=2, progress=False)
    assert second.encoded == 12
    xr.testing.assert_identical(store.dataset(group=FEATURES).load(), whole)


def test_sample_without_usable_tokens_gets_nan(filled_store, tmp_path):
    store = filled_store(layers=[0])
    block = np.asarray(store.zarr_group()[S.ACTIVATIONS][0, 0, 0:4])
    block[2] = np.nan
    store.write(S.ACTIVATIONS, block, start=0, layer=0, language="en")
    _save(tmp_path / "saes" / "layer_0")
    encode_features(store, find_saes(tmp_path / "saes"), progress=False)
    sel = store.dataset(group=FEATURES).sel(layer=0, language="en")
    assert (
        int(sel.tokens_used[2]) == 0
        and np.isnan(sel.feature_mean[2]).all()
        and np.isnan(sel.feature_max[2]).all()
    )
    assert np.isfinite(sel.feature_mean[3]).all()


def test_encode_refusals(encoded, make_store, tmp_path):
    store, saes, _ = encoded
    _save(saes / "layer_1", "topk", seed=7)  # a different SAE now lives where layer 1's was
    with pytest.raises(
        SaeStoreError,
        match=r"layer 1's features were encoded with another SAE \(.*layer_1, sha256 "
        r"[0-9a-f]{12}\.\.\.\) than .*; start over with --overwrite",
    ):
        encode_features(store, find_saes(saes), progress=False)
    other = tmp_path / "other"
    _save(other / "layer_0", d_sae=48)
    _save(other / "layer_1", d_sae=32)
    with pytest.raises(SaeStoreError, match=r"same d_sae .* got layer 0: 48, layer 1: 32"):
        encode_features(store, find_saes(other), progress=False)
    _save(tmp_path / "wide" / "layer_0", d_in=24)
    with pytest.raises(
        SaeStoreError, match=r"SAEs with d_in \{0: 24\} do not fit the store's hidden size 16"
    ):
        encode_features(store, find_saes(tmp_path / "wide"), progress=False)
    with pytest.raises(
        SaeStoreError, match=r"no SAE for layer\(s\) \[3\] in '.*saes' \(it has layers \[0, 1\]\)"
    ):
        find_saes(saes, [0, 3])
    with pytest.raises(SaeStoreError, match=r"no SAE folder at '.*missing'"):
        find_saes(tmp_path / "missing")
    partial = make_store(8, samples_per_shard=4, layers=[0], hidden_size=16)
    fill_store(partial, blocks=[0])
    with pytest.raises(IncompleteError, match=r"activations of layer 0 are not complete for samples 4:8"):
        encode_features(partial, {0: saes / "layer_0"}, progress=False)
    # the first task's blocks are complete: it can run
    assert (
        encode_features(partial, {0: saes / "layer_0"}, task_index=0, task_count=2, progress=False).encoded
        == 2
    )


def test_cli_encode(filled_store, tmp_path, capsys, monkeypatch):
    store = filled_store()
    _save(tmp_path / "saes" / "layer_1")
    assert main(["encode", str(store.path), "--saes", str(tmp_path / "saes"), "--no-progress"]) == 0
    assert "encoded 12 (layer, language, block) units" in capsys.readouterr().out
    assert (
        main(["encode", str(store.path), "--saes", str(tmp_path / "saes"), "--layers", "0", "--no-progress"])
        == 2
    )
    assert "no SAE for layer(s) [0]" in capsys.readouterr().err
    seen = []

    def record(_store, _saes, config, **_kw):
        seen.append(config)
        return SimpleNamespace(encoded=0, layers=(1,), skipped=12)

    monkeypatch.setattr(encode_module, "encode_features", record)
    assert main(["encode", str(store.path), "--saes", str(tmp_path / "saes"), "--sae-memory", "1.5GiB"]) == 0
    assert seen[0].sae_memory == int(1.5 * 1024**3)
    assert main(["encode", str(store.path), "--saes", str(tmp_path / "saes"), "--sae-memory", "0"]) == 2
    assert "size '0' must be positive" in capsys.readouterr().err


def test_concurrent_array_tasks_write_disjoint_files(encoded):
    """Tasks running at the same time own whole blocks: every file is written by one task only
    (a block's statistics shard holds all layers and languages), and the result is the same."""
    store, saes, _ = encoded
    whole = store.dataset(group=FEATURES).load()
    delete_group(store, FEATURES)  # the tasks race to create the group, as a job array's do
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(
            target=encode_features,
            args=(store, find_saes(saes)),
            kwargs=dict(task_index=i, task_count=3, progress=False),
        )
        for i in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    files = sorted(p.relative_to(store.path / FEATURES) for p in (store.path / FEATURES).rglob("c/*/*/*/*"))
    # one statistics file per block (shard over layers, languages, samples and features)
    assert [str(f) for f in files if str(f).startswith("feature_mean")] == [
        f"feature_mean/c/0/0/{b}/0" for b in range(len(store.blocks))
    ]
    xr.testing.assert_identical(store.dataset(group=FEATURES).load(), whole)


def test_each_block_is_written_once_for_all_layers_with_unchanged_values(filled_store, tmp_path, monkeypatch):
    from zarr.storage import LocalStore

    store = filled_store(layers=[0, 1, 2])
    saes = tmp_path / "saes"
    for layer in (0, 1, 2):
        _save(saes / f"layer_{layer}", "jumprelu" if layer == 1 else "topk", seed=layer)
    writes: dict[str, int] = {}
    set_file = LocalStore.set

    async def counting(self, key, value):
        if key.startswith(f"{FEATURES}/{S.FEATURE_MEAN}/c/"):
            writes[key] = writes.get(key, 0) + 1
        await set_file(self, key, value)

    monkeypatch.setattr(LocalStore, "set", counting)
    one_sae_at_a_time = EncodeConfig(sae_memory=1)  # every layer its own group: a write per layer
    encode_features(store, find_saes(saes), one_sae_at_a_time, progress=False)
    per_layer = store.dataset(group=FEATURES).load()
    assert len(writes) == 6 and set(writes.values()) == {3}  # 6 blocks, each rewritten for 3 layers
    writes.clear()
    result = encode_features(store, find_saes(saes), restart=True, progress=False)
    assert result.encoded == 3 * 2 * 6 and len(writes) == 6 and set(writes.values()) == {1}
    xr.testing.assert_identical(store.dataset(group=FEATURES).load(), per_layer)
    writes.clear()
    two_saes = EncodeConfig(sae_memory=2 * 4 * (2 * 16 * 48 + 2 * 48))  # layers 0-1, then 2
    encode_features(store, find_saes(saes), two_saes, restart=True, progress=False)
    assert len(writes) == 6 and set(writes.values()) == {2}
    xr.testing.assert_identical(store.dataset(group=FEATURES).load(), per_layer)
    mean, _, frac, used, _, _ = _expected(store, saes / "layer_2", 2, "ar")
    sel = per_layer.sel(layer=2, language="ar")
    np.testing.assert_allclose(sel.feature_mean.values, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(sel.tokens_used.values, used)
    assert 0 < np.count_nonzero(frac) < frac.size
