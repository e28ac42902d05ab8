"""Damaged or unwritable stores and models: one line naming the file and what to do, nothing left behind."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sae_store.data.samples import write_samples
from sae_store.store import schema as S
from sae_store_cli.main import main

from .conftest import MakeStore, samples
from .helpers import N_SAMPLES, store_files

SETPRIV = shutil.which("setpriv")


def _extract(store: Path, model: Path) -> list[str]:
    return [
        "extract", str(store), "--model", str(model), "--device", "cpu", "--dtype", "float32",
        "--batch-size", "2", "--no-progress",
    ]  # fmt: skip


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder every user can read (pytest's own temporary folders are private to their owner)."""
    folder = Path(tempfile.mkdtemp(prefix="sae-store-shared-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _as_nobody(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    """Run ``sae-store ARGS`` as the unprivileged user ``nobody`` (root ignores folder permissions)."""
    env = {**os.environ, "HOME": str(home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("SAE_STORE_KILL_POINT", None)
    cmd = [SETPRIV or "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable]
    return subprocess.run([*cmd, "-m", "sae_store_cli", *args], env=env, capture_output=True, text=True)


@pytest.mark.skipif(os.geteuid() != 0 or SETPRIV is None, reason="needs root and setpriv to run as nobody")
@pytest.mark.slow
def test_a_read_only_store_is_explained_for_append_and_extract(
    make_store: MakeStore, tiny_model_dir: Path, images_root: Path, shared_dir: Path
) -> None:
    store = shared_dir / "store.zarr"
    shutil.copytree(make_store().path, store)
    model = shutil.copytree(tiny_model_dir, shared_dir / "model")
    images = shutil.copytree(images_root, shared_dir / "images")
    csv = write_samples(samples(images, range(N_SAMPLES, N_SAMPLES + 2)), shared_dir / "new.csv")
    home = shared_dir / "home"
    home.mkdir(mode=0o777)
    home.chmod(0o777)
    for p in (shared_dir, *shared_dir.rglob("*")):
        if p != home:
            p.chmod(p.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if p.is_dir() else 0))
    files = store_files(store)

    for args in (
        ["append", str(store), "--samples", str(csv), "--images", str(images)],
        [*_extract(store, model), "--images", str(images)],
    ):
        done = _as_nobody(args, home)
        assert done.returncode == 2, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.startswith("sae-store")]
        assert "Traceback" not in done.stderr and "Loading weights" not in done.stderr, done.stderr
        assert len(lines) == 1, done.stderr
        where = f"{store}/.sae-store-locks" if args[0] == "append" else str(store)  # extract: before loading
        assert lines[0].startswith(f"sae-store {args[0]}: error: permission denied on '{where}'"), lines
        assert f"'{store}' belongs to user 'root'" in lines[0] and "and you are 'nobody'" in lines[0]
        assert "Run the command as a user who may write there" in lines[0]
        assert store_files(store) == files and not (store / ".sae-store-locks").exists()


def test_a_truncated_chunk_is_named_by_status_and_explained_by_extract(
    make_store: MakeStore, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_store().path
    assert main([*_extract(store, tiny_model_dir), "--sample-range", "0:4", "--languages", "en"]) == 0
    capsys.readouterr()
    flags = store / S.COMPLETE / "c" / "0" / "0" / "0"
    flags.write_bytes(flags.read_bytes()[:5])
    assert main(["status", str(store)]) == 1
    assert "ERROR: complete/c" in capsys.readouterr().out
    assert main(_extract(store, tiny_model_dir)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sae-store extract: error: stored data of '{store}' cannot be decoded (")
    assert f"Run `sae-store verify {store}` to name it" in err and len(err.splitlines()) == 1
    args = ["train", str(store), "--layer", "0", "--out", str(store.parent / "saes"), "--steps", "2"]
    assert main(args) == 2
    assert f"sae-store train: error: stored data of '{store}' cannot be decoded (" in capsys.readouterr().err
    assert main(["verify", str(store)]) == 1
    # schema 2: one flag file per block holds every layer and language of it
    expected = "ERROR: complete/c/0/0/0 (layer 0,1,2,3 en,ar samples 0:4): cannot be decoded"
    assert expected in capsys.readouterr().out
    assert main(["verify", str(store), "--repair"]) == 1
    assert main(["status", str(store)]) == 0


def test_truncated_weights_are_refused_at_init_and_nothing_is_created(
    tiny_model_dir: Path, images_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    csv = write_samples(samples(images_root, range(4)), tmp_path / "samples.csv")
    store = tmp_path / "store.zarr"
    assert main(["init", str(store), "--samples", str(csv), "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert f"Weight file '{weights}' is damaged or incomplete: it should be " in err
    assert "bytes (header and tensors) but is" in err and "Download it again" in err
    assert not store.exists()
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    assert main(["init", str(store), "--samples", str(csv), "--model", str(model)]) == 2
    assert "has an unreadable header (JSONDecodeError" in capsys.readouterr().err
    assert not store.exists()
