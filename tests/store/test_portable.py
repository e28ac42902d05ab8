"""Other readers of the store: a second Zarr v3 implementation (TensorStore) reads every array of
every group that is not text, every label through its integer codes; the whole tree exports to
netCDF; cf_xarray decodes every flag variable."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from sae_store.store import schema as S
from sae_store.store.checksums import arrays_without_checksums
from tests.store import migration_data

ts = pytest.importorskip("tensorstore")
cf_xarray = pytest.importorskip("cf_xarray")


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("portable") / "store.zarr"
    migration_data.build(path, later_groups=True)
    return path


def tensorstore_read(path: Path) -> np.ndarray:
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}
    return np.asarray(ts.open(spec, read=True).result().read().result())


def _strings(values: np.ndarray) -> list[str]:
    return [str(s) for s in values.ravel()]


def check_portable(path: Path) -> tuple[dict[str, int], set[str]]:
    """Open every array of the store at ``path`` with TensorStore: numeric ones must read bit for bit
    as zarr-python reads them; a string array must be text (:data:`~sae_store.store.schema.TEXT_VARIABLES`)
    or have an integer ``<name>_code`` beside it whose CF flags decode to the same strings. Returns the
    counts of arrays read, labels decoded and text arrays, and the paths of the labels decoded."""
    root = zarr.open_group(str(path), mode="r", use_consolidated=False)
    counts = {"read": 0, "labels": 0, "text": 0}
    labels: set[str] = set()
    for name, node in root.members(max_depth=None):
        if not isinstance(node, zarr.Array):
            continue
        mine = np.asarray(node[...])
        if mine.dtype.kind in "biuf":
            theirs = tensorstore_read(path / name)
            assert theirs.dtype == mine.dtype and theirs.tobytes() == mine.tobytes(), name
            counts["read"] += 1
            continue
        parent, _, base = name.rpartition("/")
        if base in S.TEXT_VARIABLES:
            counts["text"] += 1
            continue
        code = f"{parent}/{base}{S.CODE_SUFFIX}" if parent else f"{base}{S.CODE_SUFFIX}"
        assert code in root, f"{name} holds labels without integer codes"
        attrs = json.loads((path / code / "zarr.json").read_text())["attributes"]
        meanings = attrs["flag_meanings"].split()
        assert attrs["flag_values"] == list(range(len(meanings))), code
        decoded = ["" if c < 0 else meanings[c] for c in tensorstore_read(path / code).ravel()]
        assert decoded == _strings(mine), name
        counts["labels"] += 1
        labels.add(name)
    return counts, labels


def check_tree_exports(path: Path, out: Path) -> None:
    """The whole store, cut to 4 samples, written as one netCDF-4 file and read back; every flag
    variable of every group decoded by cf_xarray."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's notice about consolidated metadata
        tree = xr.open_datatree(path, engine="zarr")
    part = tree.isel(sample=slice(0, 4))
    part.to_netcdf(out)
    back = xr.open_datatree(out)
    assert set(back.groups) == set(part.groups)
    for node in part.subtree:
        ds = node.to_dataset(inherit=False)
        for name, var in ds.data_vars.items():
            np.testing.assert_array_equal(
                back[node.path][name].values, var.values, err_msg=f"{node.path}/{name}"
            )
            if "flag_meanings" in var.attrs:
                flags = ds[name].cf.flags  # one boolean variable per meaning
                assert list(flags.data_vars) == var.attrs["flag_meanings"].split(), f"{node.path}/{name}"


def test_tensorstore_reads_every_array_and_every_label(store_path):
    assert not arrays_without_checksums(store_path)  # every array read below carries CRC32C checksums
    counts, labels = check_portable(store_path)
    # activations, flags, statistics, codes, coordinates, features, captions' counts, results
    assert counts["read"] >= 35
    # gender and language in the root, features and generation; labels, direction, entry_language
    assert counts["labels"] >= 10 and {"features/gender", "generation/language"} <= labels
    root = zarr.open_group(str(store_path), mode="r")
    roles = [S.TOKEN_ROLE_MEANINGS[c] for c in tensorstore_read(store_path / S.TOKEN_ROLE).ravel()]
    assert "image_token" in roles and set(roles) <= set(S.TOKEN_ROLE_MEANINGS)
    failed = ["failed" if e else "ok" for e in _strings(np.asarray(root[S.EXTRACT_ERROR][...]))]  # type: ignore[index]
    status = [S.EXTRACT_STATUS_NAMES[c] for c in tensorstore_read(store_path / S.EXTRACT_STATUS).ravel()]
    assert status == failed and "failed" in failed


def test_tensorstore_checks_the_chunk_checksums(store_path, tmp_path):
    copy = tmp_path / S.ACTIVATIONS
    shutil.copytree(store_path / S.ACTIVATIONS, copy)
    shard = sorted(f for f in (copy / "c").rglob("*") if f.is_file())[0]
    data = bytearray(shard.read_bytes())
    data[200] ^= 0x10  # inside the first inner chunk's compressed bytes
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="Digest mismatch"):
        tensorstore_read(copy)


def test_whole_tree_exports_to_netcdf_and_flags_decode(store_path, tmp_path):
    check_tree_exports(store_path, tmp_path / "tree.nc")


def test_token_role_flags_do_not_collide_with_the_image_coordinate(store_path):
    ds = xr.open_zarr(store_path)
    flags = ds[S.TOKEN_ROLE].cf.flags
    assert "image" in ds.coords and bool(flags["image_token"].any())
    np.testing.assert_array_equal(flags["image_token"].values, ds[S.TOKEN_ROLE].values == 3)


def test_a_version_2_store_had_labels_only_as_strings(tmp_path):
    from tests.store.test_migrate import v2_store

    with pytest.raises(AssertionError, match=r"^\w+/\w+ holds labels without integer codes"):
        check_portable(v2_store(tmp_path))
