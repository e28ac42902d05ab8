from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sae_store.data.samples import SAMPLE_COLUMNS, read_samples, write_samples
from sae_store.errors import DataError


def _table(**overrides: list[str]) -> pd.DataFrame:
    data = {
        "sample_id": ["a", "b"],
        "image": ["a.png", "sub/b.png"],
        "image_path": ["/x/a.png", "/x/sub/b.png"],
        "gender": ["male", "female"],
        "en_caption": ["A man.\nA boy.", "A woman."],
        "ar_caption": ["رجل.\nولد.", ""],
    }
    data.update(overrides)
    return pd.DataFrame(data)


def test_roundtrip_keeps_strings_newlines_and_extra_columns(tmp_path: Path) -> None:
    df = _table()
    df["note"] = ["001", ""]
    path = write_samples(df, tmp_path / "sub" / "samples.csv")
    back = read_samples(path)
    assert list(back.columns) == [*SAMPLE_COLUMNS, "note"]
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert back.loc[1, "ar_caption"] == ""
    assert back.loc[0, "note"] == "001"


def test_read_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"Samples table '.*nope.csv' does not exist"):
        read_samples(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"is not a file"):
        read_samples(tmp_path)


def test_read_empty_file(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("")
    with pytest.raises(DataError, match=r"Cannot read samples table '.*s.csv'"):
        read_samples(tmp_path / "s.csv")


def test_read_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    _table().drop(columns=["gender"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"lacks the column\(s\) \['gender'\]; found \['sample_id', 'image'"):
        read_samples(path)


def test_read_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    _table().iloc[:0].to_csv(path, index=False)
    with pytest.raises(DataError, match=r"has no rows"):
        read_samples(path)


def test_duplicate_ids(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    _table(sample_id=["a", "a"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"repeated sample ids in column 'sample_id': \['a'\]"):
        read_samples(path)
    with pytest.raises(DataError, match=r"repeated sample ids"):
        write_samples(_table(sample_id=["a", "a"]), tmp_path / "t.csv")
    assert not (tmp_path / "t.csv").exists()


def test_bad_gender_value(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    _table(gender=["male", "f"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"value 'f' in column 'gender' \(data row 2\); allowed values"):
        read_samples(path)


def test_empty_sample_id(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"empty 'sample_id' in data row\(s\) \[2\]"):
        write_samples(_table(sample_id=["a", " "]), tmp_path / "s.csv")
