"""Damage at rest: a flipped byte, a truncated file or a deleted chunk file of every array and group of a
small store is detected by ``verify`` and named first; ``--repair`` and the command it names restore the
store bit for bit wherever the data can be recomputed."""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from sae_store.analyze.results import write_analysis
from sae_store.store import open_store
from sae_store.store import schema as S
from sae_store.store.checksums import array_metadata
from sae_store.store.repair import repair_store
from sae_store.store.verify import verify_store
from sae_store_cli.main import main
from tests.extract.helpers import assert_same_files

from .helpers import save_saes

CAPTION = ["--device", "cpu", "--dtype", "float32", "--max-new-tokens", "6", "--batch-size", "2"]
#: Options the named commands are run with here: those the store was made with (one CPU thread).
SETTINGS = {
    "extract": ["--device", "cpu", "--dtype", "float32", "--batch-size", "2", "--no-progress"],
    "encode": ["--no-progress"],
    "caption": CAPTION,
}


@pytest.fixture(scope="module")
def whole(reference: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference store with features (two layers), captions and an analysis result."""
    root = tmp_path_factory.mktemp("damage")
    store = root / "store.zarr"
    shutil.copytree(reference, store)
    layers = list(open_store(store).layout.layers[:2])
    saes = save_saes(root / "saes", layers, open_store(store).layout.hidden_size)
    assert main(["encode", str(store), "--saes", str(saes), "--no-progress"]) == 0
    assert main(["caption", str(store), *CAPTION]) == 0
    opened = open_store(store)
    result = xr.Dataset(
        {"effect": (("layer", "feature"), np.arange(2 * 24, dtype=np.float32).reshape(2, 24))},
        coords={"layer": layers, "feature": np.arange(24)},
    )
    write_analysis(opened, "bias", result)
    return store


def _chunk_files(store: Path) -> dict[str, Path]:
    """One chunk file of every array (its first), by array key."""
    out = {}
    for key, _ in array_metadata(store):
        files = (
            sorted(f for f in (store / key / "c").rglob("*") if f.is_file())
            if (store / key / "c").is_dir()
            else []
        )
        if files:
            out[key] = files[0]
    return out


def _flip(offset: Callable[[int], int]) -> Callable[[Path], None]:
    def damage(f: Path) -> None:
        data = bytearray(f.read_bytes())
        data[offset(len(data))] ^= 0x10
        f.write_bytes(bytes(data))

    return damage


DAMAGE: dict[str, Callable[[Path], None]] = {
    "flip first byte": _flip(lambda n: 0),
    "flip middle byte": _flip(lambda n: n // 2),
    "flip a checksum byte": _flip(lambda n: n - 2),
    "truncate": lambda f: f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2]),
    "delete": lambda f: f.unlink(),
}


@pytest.mark.slow
def test_every_damage_to_every_array_is_detected_and_named_first(whole: Path, tmp_path: Path) -> None:
    assert verify_store(open_store(whole)).ok
    files = _chunk_files(whole)
    groups = {key.split("/")[0] for key in files if "/" in key}
    assert {S.FEATURES, S.GENERATION, S.ANALYSIS} <= groups and S.ACTIVATIONS in files and len(files) > 40
    missed, cases = [], 0
    store = tmp_path / "case.zarr"
    shutil.copytree(whole, store)
    for original in files.values():
        rel = original.relative_to(whole)
        for what, damage in DAMAGE.items():
            damage(store / rel)
            cases += 1
            report = verify_store(open_store(store))
            # a deleted flag file is named as a notice: an interrupted write looks the same
            named = bool(report.problems) and report.problems[0].file == str(rel)
            if not named or (report.ok and not report.problems[0].notice):
                missed.append((str(rel), what, [p.file for p in report.problems][:3]))
            shutil.copy2(original, store / rel)  # undamaged again for the next case
    assert not missed, f"{len(missed)} of {cases} damage cases not named first: {missed}"


def _run(command: str, store: Path) -> None:
    """Run a command ``verify --repair`` named (with the options the store was made with)."""
    args = shlex.split(command.removeprefix("sae-store "))
    assert args[1] == str(store)
    assert main([*args, *SETTINGS.get(args[0], [])]) == 0, command


@pytest.mark.slow
@pytest.mark.parametrize(
    ("key", "what"),
    [
        (S.ACTIVATIONS, "flip middle byte"),
        (S.N_TOKENS, "flip middle byte"),
        (S.MAX_ABS, "truncate"),
        (S.INPUT_IDS, "delete"),
        (S.COMPLETE, "delete"),
        (f"{S.FEATURES}/feature_mean", "flip middle byte"),
        (f"{S.FEATURES}/{S.COMPLETE}", "delete"),
        (f"{S.FEATURES}/{S.SAMPLE}", "delete"),
        (f"{S.GENERATION}/generated_caption", "flip first byte"),
        (f"{S.GENERATION}/n_generated", "delete"),
    ],
)
def test_repair_and_the_named_command_restore_the_store_bit_for_bit(
    whole: Path, tmp_path: Path, key: str, what: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store.zarr"
    shutil.copytree(whole, store)
    f = store / _chunk_files(whole)[key].relative_to(whole)
    DAMAGE[what](f)
    report = verify_store(open_store(store))
    assert report.problems[0].file == str(f.relative_to(store))
    assert report.ok == report.problems[0].notice  # only a lost flag file is a notice
    done = repair_store(open_store(store), report)
    assert report.problems[0].notice or all("redoes it" in x or "writes it again" in x for x in done), done
    for command in report.redo_commands():
        _run(command, store)
    after = verify_store(open_store(store))
    assert after.ok, after.render()
    assert_same_files(store, whole)


def test_a_damaged_result_is_removed_and_the_analysis_named(whole: Path, tmp_path: Path) -> None:
    store = tmp_path / "store.zarr"
    shutil.copytree(whole, store)
    f = store / _chunk_files(whole)["analysis/bias/effect"].relative_to(whole)
    DAMAGE["flip middle byte"](f)
    report = verify_store(open_store(store))
    assert report.problems[0].file == str(f.relative_to(store))
    assert report.redo_commands() == [f"sae-store analyze bias {store}"]
    assert repair_store(open_store(store), report) == [
        f"removed the group analysis/bias (a damaged file or its metadata); `sae-store analyze bias {store}` "
        "writes it again"
    ]
    assert not (store / "analysis" / "bias").exists() and verify_store(open_store(store)).ok


def test_damage_to_what_init_made_names_the_file_and_repair_clears_nothing(
    whole: Path, tmp_path: Path
) -> None:
    for key in (S.IMAGE, S.SAMPLE, S.LAYER, S.TOKEN):
        store = tmp_path / f"{key}.zarr"
        shutil.copytree(whole, store)
        f = store / _chunk_files(whole)[key].relative_to(whole)
        f.unlink()
        report = verify_store(open_store(store))
        assert report.problems[0].file == str(f.relative_to(store)) and not report.problems[0].redoable, key
        assert repair_store(open_store(store), report) == []
        assert "no command rebuilds them in place" in report.render()
