"""A second Zarr v3 implementation (TensorStore) reads every numeric array and every label."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from sae_store.store import schema as S
from tests.store import migration_data

ts = pytest.importorskip("tensorstore")

#: Arrays whose strings are the data itself; every other array is numeric or boolean.
STRING_DATA = {S.SAMPLE, S.IMAGE, S.CAPTION, S.EXTRACT_ERROR, S.LANGUAGE, S.GENDER}


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("portable") / "store.zarr"
    migration_data.build(path)
    return path


def _read(path: Path) -> np.ndarray:
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}
    return np.asarray(ts.open(spec, read=True).result().read().result())


def test_tensorstore_reads_every_numeric_array_bit_for_bit(store_path):
    root = zarr.open_group(str(store_path), mode="r")
    numeric = 0
    for name, node in root.members(max_depth=None):
        if not isinstance(node, zarr.Array):
            continue
        mine = np.asarray(node[...])
        if mine.dtype.kind not in "biuf":
            assert name.rsplit("/", 1)[-1] in STRING_DATA, f"{name} holds strings that are not data"
            continue
        theirs = _read(store_path / name)
        assert theirs.dtype == mine.dtype and theirs.tobytes() == mine.tobytes(), name
        numeric += 1
    assert numeric >= 20  # activations, flags, statistics, codes, coordinates, features


def test_every_label_decodes_from_its_integer_codes(store_path):
    root = zarr.open_group(str(store_path), mode="r")

    def decoded(name: str) -> list[str]:
        attrs = json.loads((store_path / name / "zarr.json").read_text())["attributes"]
        meanings = attrs["flag_meanings"].split()
        assert attrs["flag_values"] == list(range(len(meanings)))
        return [meanings[c] for c in _read(store_path / name).ravel()]

    def strings(name: str) -> list[str]:
        return [str(s) for s in np.asarray(root[name][...]).ravel()]  # type: ignore[index]

    assert decoded(S.GENDER_CODE) == strings(S.GENDER)
    assert decoded(S.LANGUAGE_CODE) == strings(S.LANGUAGE)
    failed = ["failed" if e else "ok" for e in strings(S.EXTRACT_ERROR)]
    assert decoded(S.EXTRACT_STATUS) == failed and "failed" in failed
    roles = decoded(S.TOKEN_ROLE)
    assert set(roles) <= set(S.TOKEN_ROLE_NAMES) and "image" in roles
