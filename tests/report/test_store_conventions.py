"""Store conventions (CF / xarray): attributes on every variable, a ``Conventions`` attribute, root
attributes a netCDF writer accepts, the whole store as one ``xr.DataTree``, a short ``repr``."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import xarray as xr

from sae_store.analyze.results import read_analysis, write_analysis
from sae_store.store import ActivationStore, open_store
from sae_store.store import schema as S


def _open_tree(store: ActivationStore) -> xr.DataTree:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's notice about consolidated metadata
        return xr.open_datatree(store.path, engine="zarr")


def test_whole_store_opens_as_datatree_and_every_variable_is_described(full_store):
    tree = _open_tree(full_store)
    groups = set(tree.groups)
    assert {"/features", "/analysis/bias", "/analysis/crosslayer"} <= groups
    assert any(g.startswith("/analysis/intervene/") and "/layer_" in g for g in groups)
    assert tree.attrs["Conventions"].startswith("CF-")
    undescribed = [
        f"{node.path}:{name}"
        for node in tree.subtree
        for name, var in node.to_dataset(inherit=False).variables.items()
        if not ({"long_name", "description"} & set(var.attrs))
    ]
    assert undescribed == []
    for dim in (S.LAYER, S.LANGUAGE, S.SAMPLE, S.TOKEN, S.HIDDEN):
        assert tree[dim].attrs["long_name"], dim
    assert tree["activations"].attrs["units"] == "1"
    assert tree["features"]["feature"].attrs["long_name"] == "SAE latent index"


def test_label_codes_carry_cf_flags(full_store):
    ds = full_store.dataset()
    for name in (S.GENDER_CODE, S.LANGUAGE_CODE, S.EXTRACT_STATUS, S.TOKEN_ROLE):
        attrs = ds[name].attrs
        meanings = attrs["flag_meanings"].split()
        assert list(attrs["flag_values"]) == list(range(len(meanings))), name
    genders = np.asarray(ds[S.GENDER].values).astype(object)
    decoded = np.array(ds[S.GENDER_CODE].attrs["flag_meanings"].split(), dtype=object)[
        ds[S.GENDER_CODE].values
    ]
    assert decoded.tolist() == genders.tolist()
    langs = ds[S.LANGUAGE_CODE].attrs["flag_meanings"].split()
    assert [langs[c] for c in ds[S.LANGUAGE_CODE].values] == [str(x) for x in ds.language.values]


def test_selection_writes_to_netcdf(full_store, tmp_path):
    ds = full_store.dataset()
    assert isinstance(ds.attrs["model"], str) and json.loads(ds.attrs["model"]) == full_store.attrs["model"]
    part = ds.isel(sample=slice(0, 4), layer=[1])
    part.to_netcdf(tmp_path / "part.nc")
    back = xr.open_dataset(tmp_path / "part.nc")
    np.testing.assert_array_equal(back["activations"].values, part["activations"].values)
    assert json.loads(back.attrs["config"]) == full_store.attrs["config"]
    assert back["activations"].attrs["long_name"] == ds["activations"].attrs["long_name"]


def test_repr_is_short(full_store):
    text = repr(open_store(full_store.path))
    assert len(text) < 200 and f"schema v{S.SCHEMA_VERSION}" in text and "layers" in text
    assert "chat_template" not in text and "config" not in text


def test_analysis_of_a_subset_of_layers_stays_aligned(full_store, tmp_path):
    path = tmp_path / "store.zarr"
    shutil.copytree(full_store.path, path)
    store = open_store(path)
    layers = list(store.layout.layers)[1:]
    values = np.arange(len(layers) * 2, dtype=np.float64).reshape(len(layers), 2)
    ds = xr.Dataset(
        {"score": ((S.LAYER, S.LANGUAGE), values), "n_rows": ((S.LAYER,), np.array([3] * len(layers)))},
        coords={S.LAYER: layers, S.LANGUAGE: np.array(store.layout.languages, dtype=object)},
    )
    write_analysis(store, "subset_demo", ds)
    stored = xr.open_zarr(path, group="analysis/subset_demo")
    assert stored.sizes[S.LAYER] == len(store.layout.layers)  # the store's whole layer axis ...
    assert np.isnan(stored["score"].values[0]).all() and stored["n_rows"].values[0] == -1
    back = read_analysis(store, "subset_demo")  # ... and the analysed layers when read back
    assert back[S.LAYER].values.tolist() == layers
    np.testing.assert_array_equal(back["score"].values, values)
    assert back["score"].attrs["long_name"] == "score"
    assert "/analysis/subset_demo" in _open_tree(store).groups
