from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sae_store.data.prepare import prepare_samples
from sae_store.data.samples import SAMPLE_COLUMNS, read_samples
from sae_store.errors import ConfigError, DataError

from .helpers import WriteCsv, write_png

HEADER = ["image", "en_caption", "ar_caption"]


def test_groups_captions_per_image_and_labels(tmp_path: Path, images_dir: Path, write_csv: WriteCsv) -> None:
    csv = write_csv(
        [
            HEADER,
            ["a.png", "A man walking.", "رجل يمشي."],
            ["b.png", "A girl reading.", "فتاة تقرأ."],
            ["a.png", "A boy outside.", "ولد في الخارج."],
            ["c.png", "A man and a woman.", "رجل وامرأة."],
            ["d.png", "A person.", "شخص."],
        ]
    )
    result = prepare_samples(csv, images_dir, tmp_path / "out")
    df = result.samples
    assert list(df.columns) == list(SAMPLE_COLUMNS)
    assert df["sample_id"].tolist() == ["a", "b"]
    assert df["gender"].tolist() == ["male", "female"]
    assert df.loc[0, "en_caption"] == "A man walking.\nA boy outside."
    assert df.loc[0, "ar_caption"] == "رجل يمشي.\nولد في الخارج."
    assert df.loc[0, "image_path"] == os.path.abspath(images_dir / "a.png")
    assert read_samples(result.samples_path).equals(df)
    report = json.loads(result.report_path.read_text(encoding="utf-8"))
    assert report == result.report
    assert report["label_counts_before"] == {"male": 1, "female": 1, "ambiguous": 1, "unknown": 1}
    assert report["label_counts_after"] == {"male": 1, "female": 1, "ambiguous": 0, "unknown": 0}
    assert [e["image"] for e in report["excluded_unlabelled"]] == ["c.png", "d.png"]
    assert report["rejected_rows"] == []


def test_keep_unlabelled(tmp_path: Path, images_dir: Path, write_csv: WriteCsv) -> None:
    csv = write_csv([HEADER, ["a.png", "A man and a woman.", ""], ["b.png", "A tree.", ""]])
    result = prepare_samples(csv, images_dir, tmp_path / "out", keep_unlabelled=True)
    assert result.samples["gender"].tolist() == ["ambiguous", "unknown"]
    assert result.report["excluded_unlabelled"] == []
    assert result.report["images_without_caption"] == {"en": 0, "ar": 2}


def test_report_lists_every_rejected_row(tmp_path: Path, images_dir: Path, write_csv: WriteCsv) -> None:
    (images_dir / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (images_dir / "folder.png").mkdir()
    csv = write_csv(
        [
            [*HEADER, "gender"],
            ["a.png", "A man.", "رجل.", "m"],  # 1 kept
            ["", "A woman.", "امرأة.", "f"],  # 2 empty image name
            ["gone.png", "A man.", "رجل.", "m"],  # 3 missing file
            ["bad.png", "A woman.", "امرأة.", "f"],  # 4 corrupt
            ["bad.png", "A lady.", "سيدة.", "f"],  # 5 corrupt (same image)
            ["b.png", "A man.", "رجل.", "male"],  # 6 conflicting
            ["b.png", "A man.", "رجل.", "female"],  # 7 conflicting
            ["c.png", "", "", "f"],  # 8 empty captions
            ["c.png", "A woman.", "", "f"],  # 9 kept
            ["folder.png", "A man.", "", "m"],  # 10 not a file
        ]
    )
    result = prepare_samples(csv, images_dir, tmp_path / "out", gender_column="gender")
    rows = [(r["row"], r["image"], r["reason"]) for r in result.report["rejected_rows"]]
    assert rows == [
        (2, "", "empty image name"),
        (3, "gone.png", "missing file"),
        (4, "bad.png", "corrupt image"),
        (5, "bad.png", "corrupt image"),
        (6, "b.png", "conflicting gender values"),
        (7, "b.png", "conflicting gender values"),
        (8, "c.png", "empty captions"),
        (10, "folder.png", "not a file"),
    ]
    assert "male in rows [6]; female in rows [7]" in result.report["rejected_rows"][4]["detail"]
    assert result.samples["sample_id"].tolist() == ["a", "c"]
    assert result.report["rows_total"] == 10


def test_gender_column_overrides_captions(tmp_path: Path, images_dir: Path, write_csv: WriteCsv) -> None:
    csv = write_csv(
        [
            ["image", "en_caption", "ar_caption", "sex"],
            ["a.png", "A person.", "", "Woman"],
            ["b.png", "A man.", "", "F"],  # disagrees with the captions
            ["c.png", "A man.", "", ""],  # empty cell: unknown
        ]
    )
    result = prepare_samples(csv, images_dir, tmp_path / "out", gender_column="sex", keep_unlabelled=True)
    assert result.samples["gender"].tolist() == ["female", "female", "unknown"]
    assert result.report["gender_column_disagreements"] == [
        {"image": "b.png", "given": "female", "from_captions": "male"}
    ]


def test_sample_ids_fall_back_to_paths(tmp_path: Path, write_csv: WriteCsv) -> None:
    images = tmp_path / "images"
    for name in ("x/a.png", "y/a.png", "y/b.png"):
        write_png(images / name)
    csv = write_csv(
        [HEADER, ["x/a.png", "A man.", ""], ["y/a.png", "A man.", ""], ["y/b.png", "A girl.", ""]]
    )
    result = prepare_samples(csv, images, tmp_path / "out")
    assert result.samples["sample_id"].tolist() == ["x/a.png", "y/a.png", "b"]


def _many(write_csv: WriteCsv, tmp_path: Path, n_male: int, n_female: int) -> tuple[Path, Path]:
    images = tmp_path / "images"
    rows = [HEADER]
    for i in range(n_male + n_female):
        write_png(images / f"{i:03d}.png")
        rows.append([f"{i:03d}.png", "A man." if i < n_male else "A woman.", ""])
    return write_csv(rows), images


def test_stratified_subsample_deterministic(tmp_path: Path, write_csv: WriteCsv) -> None:
    csv, images = _many(write_csv, tmp_path, 30, 20)
    first = prepare_samples(csv, images, tmp_path / "o1", num_samples=10, seed=7)
    again = prepare_samples(csv, images, tmp_path / "o2", num_samples=10, seed=7)
    other = prepare_samples(csv, images, tmp_path / "o3", num_samples=10, seed=8)
    assert first.report["label_counts_after"] == {"male": 6, "female": 4, "ambiguous": 0, "unknown": 0}
    assert first.report["not_selected_counts"] == {"male": 24, "female": 16, "ambiguous": 0, "unknown": 0}
    assert first.samples_path.read_bytes() == again.samples_path.read_bytes()
    assert first.samples["sample_id"].tolist() != other.samples["sample_id"].tolist()
    assert first.samples["sample_id"].tolist() == sorted(first.samples["sample_id"])  # CSV order kept


def test_num_samples_too_large(tmp_path: Path, write_csv: WriteCsv) -> None:
    csv, images = _many(write_csv, tmp_path, 3, 2)
    with pytest.raises(
        DataError, match=r"--num-samples 6 is more than the 5 available samples \(male: 3, female: 2;"
    ):
        prepare_samples(csv, images, tmp_path / "out", num_samples=6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_samples": 0}, r"num_samples must be a positive integer, got 0"),
        ({"seed": -1}, r"seed must be a non-negative integer, got -1"),
    ],
)
def test_bad_parameters(
    tmp_path: Path, images_dir: Path, write_csv: WriteCsv, kwargs: dict[str, int], match: str
) -> None:
    csv = write_csv([HEADER, ["a.png", "A man.", ""]])
    with pytest.raises(ConfigError, match=match):
        prepare_samples(csv, images_dir, tmp_path / "out", **kwargs)


def test_missing_csv(tmp_path: Path, images_dir: Path) -> None:
    with pytest.raises(DataError, match=r"Captions CSV '.*nope.csv' does not exist"):
        prepare_samples(tmp_path / "nope.csv", images_dir, tmp_path / "out")


def test_unreadable_csv(tmp_path: Path, images_dir: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("image,en_caption,ar_caption\na.png,caf\xe9,x\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"Cannot read captions CSV '.*latin1.csv'"):
        prepare_samples(path, images_dir, tmp_path / "out")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"Captions CSV '.*empty.csv' is empty"):
        prepare_samples(tmp_path / "empty.csv", images_dir, tmp_path / "out")


def test_missing_columns(tmp_path: Path, images_dir: Path, write_csv: WriteCsv) -> None:
    csv = write_csv([["image", "caption"], ["a.png", "A man."]])
    with pytest.raises(
        DataError, match=r"lacks the column\(s\) \['en_caption', 'ar_caption'\]; found \['image', 'caption'\]"
    ):
        prepare_samples(csv, images_dir, tmp_path / "out")
    csv = write_csv([HEADER, ["a.png", "A man.", ""]])
    with pytest.raises(DataError, match=r"lacks the column\(s\) \['sex'\].*the gender column 'sex'"):
        prepare_samples(csv, images_dir, tmp_path / "out", gender_column="sex")


def test_header_only(tmp_path: Path, images_dir: Path, write_csv: WriteCsv) -> None:
    with pytest.raises(DataError, match=r"has a header but no rows"):
        prepare_samples(write_csv([HEADER]), images_dir, tmp_path / "out")


def test_missing_images_dir(tmp_path: Path, write_csv: WriteCsv) -> None:
    csv = write_csv([HEADER, ["a.png", "A man.", ""]])
    with pytest.raises(DataError, match=r"Images folder '.*nope' does not exist"):
        prepare_samples(csv, tmp_path / "nope", tmp_path / "out")


def test_unknown_gender_value(tmp_path: Path, images_dir: Path, write_csv: WriteCsv) -> None:
    csv = write_csv([[*HEADER, "g"], ["a.png", "A man.", "", "m"], ["b.png", "A man.", "", "boy"]])
    with pytest.raises(DataError, match=r"column 'g', data row 2: Unknown gender value 'boy'; accepted"):
        prepare_samples(csv, images_dir, tmp_path / "out", gender_column="g")


@pytest.mark.parametrize(
    ("rows", "error"),
    [
        pytest.param(
            [["x.png", "A man.", ""], ["y.png", "A man.", ""]],
            r"No usable image left .*: missing file: 2; first: row 1 'x.png': '.*x.png' does not exist",
            id="nothing usable",
        ),
        pytest.param(
            [["a.png", "A man and a woman.", ""], ["b.png", "A tree.", ""]],
            r"None of the 2 usable images is labelled male or female \(ambiguous: 1, unknown: 1\)",
            id="nothing labelled",
        ),
    ],
)
def test_a_table_with_nothing_to_keep_is_refused_and_nothing_is_written(
    rows: list[list[str]], error: str, tmp_path: Path, images_dir: Path, write_csv: WriteCsv
) -> None:
    with pytest.raises(DataError, match=error):
        prepare_samples(write_csv([HEADER, *rows]), images_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_exact_duplicate_rows_are_reported_not_counted_twice(
    tmp_path: Path, images_dir: Path, write_csv: WriteCsv
) -> None:
    csv = write_csv(
        [
            HEADER,
            ["a.png", "A man walking.", "رجل يمشي."],
            ["b.png", "A girl reading.", "فتاة تقرأ."],
            ["a.png", "A man walking.", "رجل يمشي."],
            ["a.png", "A boy outside.", "رجل يمشي."],  # same image, other caption: kept
        ]
    )
    result = prepare_samples(csv, images_dir, tmp_path / "out")
    assert result.samples.loc[0, "en_caption"] == "A man walking.\nA boy outside."
    assert result.report["rejected_counts"] == {"duplicate row": 1}
    assert result.report["rejected_rows"] == [
        {"row": 3, "image": "a.png", "reason": "duplicate row", "detail": "the same as row 1"}
    ]
