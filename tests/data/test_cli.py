from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from sae_store.errors import DataError
from sae_store_cli import data_cmds


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in data_cmds.COMMANDS.values():
        add(subparsers)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_make_demo_data_then_prepare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["make-demo-data", str(tmp_path / "demo"), "--n-images", "12", "--seed", "2"]) == 0
    assert (tmp_path / "demo" / "captions.csv").is_file()
    argv = ["prepare", "--captions", str(tmp_path / "demo" / "captions.csv")]
    argv += [
        "--images",
        str(tmp_path / "demo" / "images"),
        "--out",
        str(tmp_path / "out"),
        "--num-samples",
        "4",
    ]
    assert _run(argv) == 0
    out = capsys.readouterr().out
    assert "kept 4 samples: male 2, female 2" in out
    assert "rejected 5 rows: " in out
    assert "excluded 3 ambiguous/unknown images" in out
    assert str(tmp_path / "out" / "samples.csv") in out


def test_prepare_says_how_many_rows_were_duplicates_and_keeps_one_of_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = tmp_path / "demo"
    assert _run(["make-demo-data", str(demo), "--n-images", "12", "--seed", "2"]) == 0
    text = (demo / "captions.csv").read_text()
    header, _, rows = text.partition("\n")
    (demo / "twice.csv").write_text(f"{header}\n{rows}{rows}")  # every row twice
    outputs = []
    for name in ("captions", "twice"):
        capsys.readouterr()
        args = [
            "--captions",
            str(demo / f"{name}.csv"),
            "--images",
            str(demo / "images"),
            "--keep-unlabelled",
        ]
        assert _run(["prepare", *args, "--out", str(tmp_path / name)]) == 0
        outputs.append(capsys.readouterr().out)
    n = len(rows.splitlines())
    assert (
        f"{n} rows repeat an earlier row exactly: the first of each was kept, the repeats left " in outputs[1]
    )
    assert "repeat an earlier row" not in outputs[0]
    assert outputs[0].splitlines()[0] == outputs[1].splitlines()[0]  # the same samples kept
    samples = [(tmp_path / name / "samples.csv").read_text() for name in ("captions", "twice")]
    assert samples[0] == samples[1]


def test_prepare_bad_input_raises_data_error(tmp_path: Path) -> None:
    argv = [
        "prepare",
        "--captions",
        str(tmp_path / "x.csv"),
        "--images",
        str(tmp_path),
        "--out",
        str(tmp_path),
    ]
    with pytest.raises(DataError, match=r"does not exist"):
        _run(argv)
