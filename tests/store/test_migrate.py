"""``sae-store migrate``: a version 1 or 2 store (built by that version's code) becomes exactly the
store the current code creates from the same data, also when the migration is SIGKILLed and rerun."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from sae_store.errors import SchemaVersionError, StaleResultError
from sae_store.extract.append import append_samples
from sae_store.faults import ENV_VAR, kill_points
from sae_store.store import open_store
from sae_store.store import schema as S
from sae_store.store.migrate import migrate_store
from sae_store.store.results import SOURCE_ATTR, read_group, stale_reason
from tests.store import migration_data

V1_ARCHIVE = Path(__file__).with_name("store-v1.tar.gz")
#: built by the version 2 code with ``migration_data.build(later_groups=True)``
V2_ARCHIVE = Path(__file__).with_name("store-v2.tar.gz")
#: attributes that differ between any two stores created at different times
_TIMESTAMPED = ("created",)


def v1_store(folder: Path, archive: Path = V1_ARCHIVE) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    return folder / "store.zarr"


def v2_store(folder: Path) -> Path:
    return v1_store(folder, V2_ARCHIVE)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same store built by the current code."""
    path = tmp_path_factory.mktemp("reference") / "store.zarr"
    migration_data.build(path)
    return path


@pytest.fixture(scope="module")
def reference_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store of ``store-v2.tar.gz`` (captions and analysis results too) built by the current code."""
    path = tmp_path_factory.mktemp("reference-v2") / "store.zarr"
    migration_data.build(path, later_groups=True)
    return path


def _nodes(path: Path) -> dict[str, zarr.Array | zarr.Group]:
    root = zarr.open_group(str(path), mode="r", use_consolidated=False)
    return {"": root, **dict(root.members(max_depth=None))}


def _attrs(node: zarr.Array | zarr.Group) -> dict:
    attrs = S.decode_attrs(dict(node.attrs))
    attrs.pop(SOURCE_ATTR, None)  # a migrated result cannot know its SAEs: checked on its own
    if S.ATTR_KEY in attrs:
        attrs[S.ATTR_KEY] = {k: v for k, v in attrs[S.ATTR_KEY].items() if k not in _TIMESTAMPED}
    return attrs


def assert_same_store(got: Path, want: Path) -> None:
    """Same groups and arrays, metadata (chunks, shards, codecs, fill values, attributes) and bytes."""
    a, b = _nodes(got), _nodes(want)
    assert sorted(a) == sorted(b)
    for key, node in b.items():
        other = a[key]
        assert _attrs(other) == _attrs(node), key
        if isinstance(node, zarr.Array):
            assert isinstance(other, zarr.Array)
            meta_a, meta_b = other.metadata.to_dict(), node.metadata.to_dict()
            meta_a.pop("attributes"), meta_b.pop("attributes")
            assert meta_a == meta_b, key
            x, y = np.asarray(other[...]), np.asarray(node[...])
            if x.dtype.kind in "biuf":
                assert x.tobytes() == y.tobytes(), key  # bit for bit, NaN payloads included
            else:
                assert x.tolist() == y.tolist(), key
    # readers that use the consolidated metadata see the same layout
    consolidated = zarr.open_group(str(got), mode="r", use_consolidated=True)
    assert consolidated[S.COMPLETE].chunks == b[S.COMPLETE].chunks  # type: ignore[union-attr]


def test_v1_store_reads_but_refuses_writes(tmp_path):
    store = open_store(v1_store(tmp_path))
    assert store.schema_version == 1
    assert store.dataset().activations.shape == (3, 2, 10, 8, 8)
    assert store.attrs["model"]["name_or_path"] == "synthetic"  # version 1 dict attributes still read
    with pytest.raises(SchemaVersionError, match=r"schema version 1.*`sae-store migrate .*store.zarr`"):
        store.write(S.N_TOKENS, np.zeros(4, np.int32), start=0, language="en")
    table = pd.DataFrame({"sample_id": ["new"], "image": ["new.png"], "gender": ["male"]})
    with pytest.raises(SchemaVersionError, match="sae-store migrate"):
        append_samples(store.path, table)


def test_migrate_matches_a_store_created_as_v3(tmp_path, reference):
    path = v1_store(tmp_path)
    lines = migrate_store(path)
    assert f"from schema version 1 to {S.SCHEMA_VERSION}" in lines[0] and len(lines) == 2
    # the arrays it leaves in place (the activations) get their checksums, as a new store has them
    assert lines[1] == (
        f"added CRC32C checksums to every chunk of 1 arrays of {str(path)!r} (activations): `sae-store "
        "verify` now detects any changed byte"
    )
    assert_same_store(path, reference)
    assert not (path / ".sae-store-locks").exists()
    assert "nothing to do" in migrate_store(path)[0]
    store = open_store(path)
    # the label codes agree with the strings
    codes = np.asarray(store.array(S.GENDER_CODE)[...])
    genders = [str(g) for g in np.asarray(store.array(S.GENDER)[...])]
    assert [S.GENDER_NAMES[c] for c in codes] == genders
    status = np.asarray(store.array(S.EXTRACT_STATUS)[...])
    assert status[1, 5] == 1 and status.sum() == 1


def test_migrate_v2_adds_codes_and_per_block_captions(tmp_path, reference_v2):
    path = v2_store(tmp_path)
    assert open_store(path).schema_version == 2
    lines = migrate_store(path)
    assert lines[0].startswith(f"migrated {str(path)!r} from schema version 2 to {S.SCHEMA_VERSION}: ")
    assert lines[1].startswith("2 analysis results got integer label codes; they predate the record")
    assert lines[2].startswith("added CRC32C checksums to every chunk of ")
    assert_same_store(path, reference_v2)
    store = open_store(path)
    assert store.array("generated_caption", S.GENERATION).chunks == (2, migration_data.PER_SHARD)
    labels = xr.open_zarr(path, group="analysis/labels", consolidated=False)
    assert labels["direction_code"].values.tolist() == [0, 1, 0]  # male, female in GENDER_NAMES order
    assert labels["direction_code"].attrs["flag_meanings"] == "male female ambiguous unknown"
    assert labels["entry_language_code"].values.tolist() == [0, 1, 1]  # the store's languages
    assert "description_code" not in labels  # text
    # results written before their SAEs were recorded: refused with the reason, until rerun
    reason = stale_reason(store, "analysis/labels")
    assert reason == (
        f"'analysis/labels' in the store {str(path)!r} was written before results recorded the SAEs of their "
        "features, so it may come from other SAEs than the features now hold"
    )
    with pytest.raises(StaleResultError) as e:
        read_group(store, "analysis/labels")
    assert str(e.value) == f"{reason}; run the step that wrote it again"


@pytest.mark.parametrize("point", ["migrate.built@3", "migrate.swapped@8", "migrate.array_done@43",
                                   "migrate.attributes"])  # fmt: skip
def test_killed_v2_migration_is_finished_by_a_rerun(tmp_path, reference_v2, point):
    path = v2_store(tmp_path)
    assert _run_migration(path, point) == -signal.SIGKILL
    assert open_store(path).schema_version == 2
    migrate_store(path)
    assert_same_store(path, reference_v2)
    assert not (path / ".sae-store-locks").exists()


def test_cli_migrate(tmp_path, capsys):
    from sae_store_cli.main import main

    path = v1_store(tmp_path)
    assert main(["migrate", str(path)]) == 0
    assert f"from schema version 1 to {S.SCHEMA_VERSION}" in capsys.readouterr().out
    assert open_store(path).schema_version == S.SCHEMA_VERSION
    assert main(["migrate", str(tmp_path / "missing")]) == 2
    assert "no activation store" in capsys.readouterr().err


def test_cli_writing_commands_refuse_a_v1_store(tmp_path, capsys):
    from sae_store_cli.main import main

    path = v1_store(tmp_path)
    table = tmp_path / "more.csv"
    pd.DataFrame(
        {
            "sample_id": ["new"],
            "image": ["new.png"],
            "image_path": [str(tmp_path / "new.png")],
            "gender": ["male"],
            "en_caption": ["A man."],
            "ar_caption": ["رجل."],
        }
    ).to_csv(table, index=False)
    assert main(["append", str(path), "--samples", str(table)]) == 2
    err = capsys.readouterr().err
    assert "schema version 1" in err and f"sae-store migrate {path}" in err and len(err.splitlines()) == 1
    assert main(["status", str(path)]) == 0  # reading works


def _run_migration(path: Path, kill_at: str | None) -> int | None:
    """Migrate in a forked child (SIGKILLing itself at ``kill_at``); its exit code."""

    def child() -> None:
        if kill_at:
            os.environ[ENV_VAR] = kill_at
        migrate_store(path)

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(60)
    return proc.exitcode


MIGRATE_POINTS = list(kill_points("migrate"))
#: per-array points also hit at a later array (a features array, after the root's are done)
REPEATED = ["migrate.built@6", "migrate.swapped@22", "migrate.array_done@29"]


def test_every_step_has_a_kill_point():
    # per array: built aside, old moved aside, new swapped in, done; then the root attributes, the
    # consolidated metadata and the version switch
    steps = ["built", "moved_aside", "swapped", "array_done", "attributes", "consolidated", "version"]
    assert set(MIGRATE_POINTS) >= {f"migrate.{step}" for step in steps}


@pytest.mark.parametrize("point", MIGRATE_POINTS + REPEATED)
def test_killed_migration_is_finished_by_a_rerun(tmp_path, reference, point):
    path = v1_store(tmp_path)
    assert _run_migration(path, point) == -signal.SIGKILL
    if point != "migrate.version":  # killed just after the switch: already the current version
        assert open_store(path).schema_version == 1
    migrate_store(path)
    assert_same_store(path, reference)
    assert not (path / ".sae-store-locks").exists()


def test_migration_killed_at_random_times(tmp_path, reference):
    rng = random.Random(11)
    started = time.perf_counter()
    assert _run_migration(v1_store(tmp_path / "timing"), None) == 0
    duration = time.perf_counter() - started
    for k in range(4):
        path = v1_store(tmp_path / f"run{k}")
        ctx = multiprocessing.get_context("fork")
        proc = ctx.Process(target=migrate_store, args=(path,))
        proc.start()
        time.sleep(rng.uniform(0.05, 0.95) * duration)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        migrate_store(path)
        assert_same_store(path, reference)
