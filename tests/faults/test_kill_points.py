"""Kill the real command at every named kill point, run the recovery command, compare bit for bit.

Each operation's points come from :data:`sae_store.faults.KILL_POINTS` filtered by operation, so
points added to the code (and the list) join these tests by themselves.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from sae_store.extract.append import append_samples
from sae_store.faults import KILL_POINTS, kill_points
from sae_store.models.loader import LoadedModel
from sae_store.store import open_store
from sae_store.store.lock import LOCK_DIR, read_append_lock, stale_lock_message
from sae_store.train.discovery import find_saes
from sae_store.train.encode import encode_features
from sae_store_cli.main import main
from tests.extract.helpers import N_SAMPLES, assert_same_files, extract_args, samples
from tests.store.refusals import assert_every_command_refuses

from .helpers import run_killed, save_saes, start

NEW = range(N_SAMPLES, N_SAMPLES + 4)
SRC = Path(__file__).resolve().parents[2] / "sae_store"


def test_every_kill_point_in_the_code_is_listed_and_every_listed_one_is_in_the_code() -> None:
    calls = [
        m.group(1)
        for f in SRC.rglob("*.py")
        for m in re.finditer(r'kill_point\((f?"[^"]+")\)', f.read_text())
    ]
    literal = {c.strip('"') for c in calls if not c.startswith("f")}
    templated = {c[2:-1].split("}", 1)[1] for c in calls if c.startswith("f")}  # f"{operation}.step"
    assert literal <= set(KILL_POINTS)
    assert all(p in literal or any(p.endswith(t) for t in templated) for p in KILL_POINTS)
    assert len(set(KILL_POINTS)) == len(KILL_POINTS)
    assert {p.partition(".")[0] for p in KILL_POINTS} >= {
        "append",
        "unlock",
        "extract",
        "encode",
        "consolidate",
    }


@pytest.fixture(scope="module")
def appended(
    reference: Path, images_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """The images table of the new samples as CSV, and the reference store with them appended."""
    root = tmp_path_factory.mktemp("appended")
    table = root / "new.csv"
    samples(images_root, NEW).to_csv(table, index=False)
    dest = root / "store.zarr"
    shutil.copytree(reference, dest)
    append_samples(dest, samples(images_root, NEW))
    return table, dest


def _recovered_by_unlock(store: Path, reference: Path, table: Path, appended: Path) -> None:
    """After unlock the store is the old one (or, if the append had finished, the appended one)."""
    assert main(["unlock", str(store)]) == 0
    assert not (store / LOCK_DIR).exists()
    assert not [d for d in store.rglob("*") if d.is_dir() and not any(d.iterdir())]  # no empty folders
    if open_store(store).layout.n_samples == N_SAMPLES:
        assert_same_files(store, reference)
        assert main(["append", str(store), "--samples", str(table)]) == 0
    assert_same_files(store, appended)


# (append killed at, then unlock killed at): the append at each of its points; then an append killed
# late whose rollback by unlock is killed at each of unlock's points
APPEND_THEN_UNLOCK = [pytest.param(p, None, id=p) for p in kill_points("append")] + [
    pytest.param("append.attributes_written", p, id=p) for p in kill_points("unlock")
]


@pytest.mark.parametrize(("append_at", "unlock_at"), APPEND_THEN_UNLOCK)
def test_append_or_its_rollback_killed_at_each_point_is_recovered_by_unlock(
    append_at: str,
    unlock_at: str | None,
    reference: Path,
    appended: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    table, grown = appended
    store = tmp_path / "store.zarr"
    shutil.copytree(reference, store)
    run_killed(["append", str(store), "--samples", str(table)], append_at)
    if unlock_at is not None:
        run_killed(["unlock", str(store)], unlock_at)
    held = read_append_lock(store)
    assert held is not None  # every point is reached before the lock goes
    message = stale_lock_message(store, held, "dead")
    assert_every_command_refuses(store, message, tmp_path, capsys)
    _recovered_by_unlock(store, reference, table, grown)


@pytest.mark.slow
def test_extraction_killed_at_each_point_is_recovered_by_extracting_again(
    make_store, loaded: LoadedModel, tiny_model_dir: Path, reference: Path
) -> None:
    points = kill_points("extract")
    stores = {p: make_store().path for p in points}
    # the second block's point: the first block is whole, the second is cut at that step
    procs = {p: start(extract_args(stores[p], tiny_model_dir), f"{p}@2") for p in points}
    for p, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == -9, f"{p} was not reached:\n{out}"
    for p, store in stores.items():
        assert main([*extract_args(store, tiny_model_dir)]) == 0, p
        assert_same_files(store, reference)
        assert not (store / LOCK_DIR).exists(), p  # no claim of the killed run or of the resumed one


@pytest.mark.slow
@pytest.mark.parametrize("point", [*kill_points("encode"), *kill_points("consolidate")])
def test_encode_killed_at_each_point_is_recovered_by_encoding_again(
    point: str, reference: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("encode")
    layers = list(open_store(reference).layout.layers[:2])
    saes = save_saes(root / "saes", layers, open_store(reference).layout.hidden_size)
    whole, store = root / "whole.zarr", root / "store.zarr"
    for dest in (whole, store):
        shutil.copytree(reference, dest)
    encode_features(open_store(whole), find_saes(saes), progress=False)
    args = ["encode", str(store), "--saes", str(saes), "--no-progress"]
    run_killed(args, point)
    assert main(args) == 0
    assert_same_files(store, whole)
