"""``sae-store init``, ``extract``, ``append`` and ``unlock`` through the command line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sae_store.data.samples import write_samples
from sae_store.store import open_store
from sae_store.store import schema as S
from sae_store_cli.main import main

from .conftest import MakeStore, samples
from .helpers import N_SAMPLES

RUN = ["--device", "cpu", "--dtype", "float32", "--batch-size", "2", "--no-progress"]


def test_init_extract_append_extract(
    tmp_path: Path, tiny_model_dir: Path, images_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = write_samples(samples(images_root, range(6)), tmp_path / "samples.csv")
    more = write_samples(samples(images_root, range(6, 9)), tmp_path / "more.csv")
    store = tmp_path / "acts.zarr"
    assert (
        main(
            [
                "init",
                str(store),
                "--samples",
                str(csv),
                "--model",
                str(tiny_model_dir),
                "--layers",
                "0-1,3",
                "--samples-per-shard",
                "4",
                "--precision",
                "fp32",
                "--prompt-ar",
                "صف هذه الصورة.",
            ]
        )
        == 0
    )
    assert "6 samples, layers 0-1,3 (3), languages en, ar," in capsys.readouterr().out
    opened = open_store(store)
    assert opened.attrs["prompts"]["ar"] == "صف هذه الصورة."
    assert opened.config()["store"]["precision"] == "fp32"

    assert main(["extract", str(store), "--model", str(tiny_model_dir), "--layers", "3", *RUN]) == 0
    assert "wrote 4 of 4 blocks" in capsys.readouterr().out
    assert main(["extract", str(store), "--model", str(tiny_model_dir), *RUN]) == 0
    assert "wrote 4 of 4 blocks (0 already complete)" in capsys.readouterr().out
    assert open_store(store).read_flags().all()

    assert main(["append", str(store), "--samples", str(more)]) == 0
    assert (
        "appended 3 samples (6 -> 9); run `sae-store extract` to fill samples 4:8, 8:9"
        in capsys.readouterr().out
    )
    assert main(["extract", str(store), "--model", str(tiny_model_dir), *RUN]) == 0
    assert "wrote 4 of 6 blocks (2 already complete)" in capsys.readouterr().out
    assert open_store(store).read_flags().all()
    assert main(["unlock", str(store)]) == 0
    assert "the store was not locked" in capsys.readouterr().out


def test_failed_images_give_a_summary_and_exit_1(
    make_store: MakeStore,
    tiny_model_dir: Path,
    images_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    images = tmp_path / "images"
    shutil.copytree(images_root, images)
    (images / "im02.png").unlink()
    store = make_store().path
    code = main(["extract", str(store), "--model", str(tiny_model_dir), "--images", str(images), *RUN])
    out = capsys.readouterr().out
    assert code == 1
    assert "1 sample(s) FAILED and have no activations (see 'extract_error'):" in out
    assert "s02 [en]: cannot load image" in out and "im02.png" in out
    assert str(open_store(store).array(S.EXTRACT_ERROR)[0, 2]).startswith("cannot load image")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--layers", "9"], "layer 9 is not in the store; it holds layers [0, 1, 2, 3]"),
        (["--layers", "1-x"], "cannot read '1-x'"),
        (["--languages", "fr"], "language 'fr' is not in the store; it holds languages ['en', 'ar']"),
        (
            ["--task-index", "3", "--task-count", "3"],
            "--task-index must be in 0..2 for --task-count 3, got 3",
        ),
        (["--sample-range", "2:8"], "sample range 2:8 is not aligned to shard blocks of 4 samples"),
        (["--sample-range", "x"], "--sample-range must look like 'A:B'"),
        (["--quota", "lots"], "size 'lots' is not understood"),
        (["--dtype", "float16"], "dtype 'fp16' is refused for Gemma 3"),
        (["--writer-threads", "0"], "--writer-threads must be a positive integer, got 0"),
    ],
)
def test_extract_errors_are_one_line_and_exit_2(
    make_store: MakeStore,
    tiny_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    match: str,
) -> None:
    store = make_store().path
    assert main(["extract", str(store), "--model", str(tiny_model_dir), *args, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sae-store extract: error: ") and match in err
    assert not open_store(store).read_flags().any()


def test_init_and_append_errors(
    make_store: MakeStore,
    tmp_path: Path,
    tiny_model_dir: Path,
    images_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = make_store().path
    csv = write_samples(samples(images_root, range(N_SAMPLES - 2, N_SAMPLES + 1)), tmp_path / "dup.csv")
    assert main(["append", str(store), "--samples", str(csv)]) == 2
    assert "2 sample id(s) are already in store" in capsys.readouterr().err
    assert main(["init", str(store), "--samples", str(csv), "--model", str(tiny_model_dir)]) == 2
    assert "an activation store already exists" in capsys.readouterr().err
    new = tmp_path / "new.zarr"
    assert (
        main(["init", str(new), "--samples", str(csv), "--model", str(tiny_model_dir), "--layers", "3-1"])
        == 2
    )
    assert "range '3-1' runs backwards" in capsys.readouterr().err
    init = ["init", str(new), "--samples", str(csv), "--model", str(tiny_model_dir)]
    assert main([*init, "--compressor", "fast", "--clevel", "10"]) == 2
    assert "--clevel must be an integer in 0..9 for 'fast', got 10" in capsys.readouterr().err
    assert main([*init, "--compressor", "zstd", "--shuffle", "bit"]) == 2
    assert "--shuffle 'bit' applies only to Blosc codecs" in capsys.readouterr().err
    assert main(["init", str(new), "--samples", str(csv), "--model", str(tmp_path / "nothing")]) == 2
    assert "does not exist or is not a folder" in capsys.readouterr().err
    assert not new.exists()


@pytest.mark.parametrize(("task_id", "task_min"), [("1", None), ("2", "1")])
def test_array_task_defaults_come_from_slurm(
    make_store: MakeStore,
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    task_id: str,
    task_min: str | None,
) -> None:
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", task_id)
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    if task_min is not None:
        monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", task_min)
    store = make_store().path
    assert main(["extract", str(store), "--model", str(tiny_model_dir), *RUN]) == 0
    flags = open_store(store).read_flags()
    assert flags[..., 4:8].all() and not flags[..., :4].any() and not flags[..., 8:].any()
