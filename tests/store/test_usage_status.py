from __future__ import annotations

import json

import numpy as np
import pytest

from sae_store.errors import SaeStoreError
from sae_store.store import StoreConfig, completion, create_store, store_usage
from sae_store.store import group_schema as G
from sae_store.store import schema as S
from sae_store.store.codecs import round_to_bf16
from sae_store.store.groups import create_features_group, create_group
from sae_store.store.usage import quota_problems
from sae_store.units import parse_count, parse_size
from sae_store_cli.main import main
from tests.conftest import model_info, samples_table


def fill_block(store, layer, language, block, rng):
    """Write one block of one layer and language as the extraction does: the per-token arrays, the
    activations (real tokens first, NaN padding), their statistics, then the flags."""
    n, tokens = block.stop - block.start, int(store.attrs["tokens_per_language"][language])
    values = round_to_bf16(
        rng.normal(size=(n, store.layout.max_tokens, store.layout.hidden_size)).astype(np.float32)
    )
    values[:, tokens:] = np.nan
    roles = np.zeros((n, store.layout.max_tokens), np.int8)
    roles[:, :tokens] = 2
    where = {"start": block.start, "language": language}
    store.write(S.N_TOKENS, np.full(n, tokens, np.int32), **where)
    store.write(S.TOKEN_ROLE, roles, **where)
    store.write(S.INPUT_IDS, np.where(roles > 0, 7, 0).astype(np.int32), **where)
    store.write(S.ACTIVATIONS, values, layer=layer, **where)
    store.write(S.MAX_ABS, np.abs(values[:, :tokens]).max(axis=(1, 2)), layer=layer, **where)
    store.write(S.NONFINITE, np.zeros(n, np.int32), layer=layer, **where)
    store.write(S.COMPLETE, np.ones(n, bool), layer=layer, **where)


def test_usage_counts_real_files_and_projects(make_store):
    store = make_store(16, samples_per_shard=4, layers=[0, 1])
    rng = np.random.default_rng(0)
    for layer in (0, 1):
        for lang in ("en", "ar"):
            fill_block(store, layer, lang, store.blocks[0], rng)
    u = store_usage(store)
    files = [p for p in store.path.rglob("*") if p.is_file()]
    assert u.files == len(files)
    assert u.disk_bytes == sum(p.stat().st_size for p in files)
    assert u.fraction_complete == pytest.approx(0.25)
    shard_files = list((store.path / S.ACTIVATIONS / "c").rglob("*"))
    shard_files = [p for p in shard_files if p.is_file()]
    assert len(shard_files) == 4
    assert (
        u.activation_disk_bytes
        == sum(p.stat().st_size for p in shard_files)
        + (store.path / S.ACTIVATIONS / "zarr.json").stat().st_size
    )
    # projection: every array's and group's zarr.json plus one file per chunk or shard of its grid;
    # writing the other blocks (as extraction does) adds exactly the files projected
    for block in store.blocks[1:]:
        for layer in (0, 1):
            for lang in ("en", "ar"):
                fill_block(store, layer, lang, block, rng)
    for name, value in (
        (S.N_TOKENS, 3),
        (S.INPUT_IDS, 1),
        (S.TOKEN_ROLE, 2),
        (S.MAX_ABS, 1),
        (S.NONFINITE, 0),
    ):
        arr = store.array(name)
        dims = arr.metadata.dimension_names
        for block in store.blocks:
            size = {S.LAYER: 2, S.SAMPLE: block.stop - block.start}
            shape = tuple(size.get(d, n) for d, n in zip(dims, arr.shape, strict=True) if d != S.LANGUAGE)
            for lang in ("en", "ar"):
                kw = {"layers": [0, 1]} if S.LAYER in dims else {}
                store.write(name, np.full(shape, value, arr.dtype), start=block.start, language=lang, **kw)
    assert len([p for p in store.path.rglob("*") if p.is_file()]) == u.projected_files
    assert store_usage(store).projected_files == u.projected_files
    assert sorted(u.activations_by_layer) == ["0", "1"] and sorted(u.activations_by_language) == ["ar", "en"]
    assert u.variables[S.ACTIVATIONS].logical_bytes == 2 * 2 * 16 * 14 * 16 * 4
    # Gaussian bf16 values: compressed below 4 bytes per value
    assert 1.0 < u.bytes_per_value < 4.0
    assert quota_problems(u, quota=u.projected_disk_bytes + 1, inode_quota=u.projected_files) == []
    problems = quota_problems(u, quota=1000, inode_quota=10)
    assert (
        len(problems) == 2 and "exceeds the quota 1.00 KB" in problems[0] and "inode quota 10" in problems[1]
    )


def test_completion_grid_and_remaining(make_store):
    store = make_store(10, samples_per_shard=4, layers=[0, 2])
    rng = np.random.default_rng(0)
    fill_block(store, 2, "ar", store.blocks[2], rng)
    store.write(S.COMPLETE, np.array([1, 1, 0, 0], bool), start=0, layer=0, language="en")
    c = completion(store)
    assert c.done.shape == (2, 2, 3)
    assert c.done[1, 1].tolist() == [0, 0, 1] and c.done[0, 0].tolist() == [0.5, 0, 0]
    assert c.fraction == pytest.approx(4 / 40)
    assert not c.is_complete
    rows = c.render().splitlines()
    assert rows[2].split() == ["0", "+..", "..."] and rows[3].split() == ["2", "...", "..#"]
    todo = {(r["layer"], r["language"]): r["blocks"] for r in c.remaining()}
    assert todo[(2, "ar")] == [[0, 4], [4, 8]] and todo[(0, "en")] == [[0, 4], [4, 8], [8, 10]]


def test_parse_size_and_count():
    assert parse_size("500G") == 500 * 10**9
    assert parse_size("1.5TB") == 1.5e12
    assert parse_size("100GiB") == 100 * 2**30
    assert parse_size("123") == 123
    for bad in ("-5G", "lots", "5X", ""):
        with pytest.raises(SaeStoreError, match=r"size .* is not understood"):
            parse_size(bad)
    with pytest.raises(SaeStoreError, match="size '0' must be positive"):
        parse_size("0")
    assert parse_count("1e6") == 10**6
    with pytest.raises(SaeStoreError, match=r"file count '-3' must be a positive whole number"):
        parse_count("-3")
    with pytest.raises(SaeStoreError, match=r"file count 'many' is not a number"):
        parse_count("many")


def test_cli_du_and_status(make_store, capsys):
    store = make_store(8, samples_per_shard=4, layers=[1])
    fill_block(store, 1, "en", store.blocks[0], np.random.default_rng(0))
    assert main(["du", str(store.path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["fraction_complete"] == 0.25 and doc["problems"] == []
    assert main(["du", str(store.path), "--quota", "1K"]) == 1
    out = capsys.readouterr().out
    assert "QUOTA: projected size" in out and "bytes/value" in out
    assert main(["du", str(store.path), "--quota=-1G"]) == 2
    assert "sae-store du: error: size '-1G' is not understood" in capsys.readouterr().err
    assert main(["du", str(store.path), "--inode-quota", "x"]) == 2
    assert main(["status", str(store.path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["done"] == [[[1.0, 0.0], [0.0, 0.0]]] and doc["complete"] is False
    assert main(["status", str(store.path)]) == 0
    assert "to do: layer 1 ar: samples 0:4, 4:8" in capsys.readouterr().out
    assert main(["status", str(store.path.parent / "missing.zarr")]) == 2
    assert "no activation store at" in capsys.readouterr().err


def _full_study(path, samples_per_shard: int):
    """The full study's store templates (metadata only): 2000 samples x 2 languages x 34 layers,
    features encoded (d_sae 16384); its usage, then its usage with captions of up to 32 tokens."""
    n = 2000
    model = model_info(n_layers=34, hidden_size=2560, tokens_per_language={"en": 278, "ar": 275})
    config = StoreConfig(samples_per_shard=samples_per_shard)
    store = create_store(path, samples_table(n), model, config=config)
    create_features_group(store, 16384, ["image", "text"], {"d_sae": 16384})
    before = store_usage(store)
    create_group(
        store,
        S.GENERATION,
        G.generation_variables(store.layout, 32),
        sizes={G.NEW_TOKEN: 32},
        root_coords=G.GENERATION_COORDS,
    )
    return before, store_usage(store)


def test_full_scale_study_file_count(tmp_path):
    """16 samples per shard: the projection counts every array's chunk grid, group by group."""
    u, captioned = _full_study(tmp_path / "full.zarr", 16)
    blocks = 2000 // 16
    assert u.projected_files == 10_192  # docs/store-schema.md, "File counts"
    # one file per activation shard; one per block for each of the 13 per-block small arrays with data
    # (extract_error and extract_status have files only where a sample failed); the rest a constant
    assert 0 < u.projected_files - (34 * 2 + 13) * blocks < 100
    # the captions' 6 arrays: one file per block each (every language in it), their zarr.json and the
    # copied coordinates (language, sample, gender and their codes: 1 + 1 + 2 + 2 + 2 chunk files)
    assert captioned.projected_files_by_group["generation"] == 6 * blocks + 6 + (1 + 5) + 8
    assert captioned.projected_files == sum(captioned.projected_files_by_group.values()) == 10_962


def test_the_example_cluster_config_fits_a_10000_file_quota(tmp_path, monkeypatch):
    from sae_store.jobs.config import load_config
    from tests.jobs.test_config import REPO

    monkeypatch.setenv("USER", "ada")
    per_shard = load_config(REPO / "configs" / "gemma3-4b.yaml").store.samples_per_shard
    assert per_shard == 32
    _, captioned = _full_study(tmp_path / "full.zarr", per_shard)
    assert captioned.projected_files == 5_556  # docs/store-schema.md, "File counts"
