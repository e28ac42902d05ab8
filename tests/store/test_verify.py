"""``verify``, ``status`` and ``du`` on damaged stores: named files, exit codes, exact repairs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from sae_store.store import open_store
from sae_store.store import schema as S
from sae_store.store.verify import FLOAT16_MAX, verify_store
from sae_store_cli.main import main

from .test_usage_status import fill_block


@pytest.fixture
def full(make_store):
    """A synthetic store (layers 0, 1; 10 samples in blocks of 4) with every block written."""
    store = make_store(10, samples_per_shard=4, layers=[0, 1])
    rng = np.random.default_rng(0)
    for lang, n in store.attrs["tokens_per_language"].items():
        store.write(S.N_TOKENS, np.full(10, n, np.int32), start=0, language=lang)
        for layer in (0, 1):
            for block in store.blocks:
                fill_block(store, layer, lang, block, rng)
    return store


def test_a_healthy_store_verifies(full, capsys):
    assert main(["verify", str(full.path)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("store OK") and "decoded" in out
    report = verify_store(full)
    assert report.ok and report.files_checked > 12 and report.bytes_checked > 0


def test_status_reports_flags_whose_data_is_gone(full, capsys):
    assert main(["status", str(full.path)]) == 0
    capsys.readouterr()
    shutil.rmtree(full.path / S.ACTIVATIONS)  # a finished store whose activations were deleted
    assert main(["status", str(full.path)]) == 1
    out = capsys.readouterr().out
    assert "ERROR: activations/zarr.json (the whole array): the array is missing (no zarr.json)" in out


def test_status_reports_a_missing_flag_array_instead_of_zero_percent(full, capsys):
    shutil.rmtree(full.path / S.COMPLETE)
    assert main(["status", str(full.path)]) == 1
    out = capsys.readouterr().out
    assert "0.0% complete" not in out and "ERROR: complete/zarr.json" in out
    assert main(["status", str(full.path), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["check"]["ok"] is False


def test_status_names_a_deleted_shard_of_a_flagged_block(full, capsys):
    (full.path / S.ACTIVATIONS / "c" / "1" / "0" / "2" / "0" / "0").unlink()
    assert main(["status", str(full.path)]) == 1
    out = capsys.readouterr().out
    assert (
        "ERROR: activations/c/1/0/2/0/0 (layer 1 en samples 8:10): missing, although its samples are flagged "
        "complete" in out
    )


def test_verify_names_a_truncated_shard_and_repair_clears_exactly_its_block(full, capsys):
    shard = full.path / S.ACTIVATIONS / "c" / "0" / "1" / "1" / "0" / "0"
    before = np.asarray(full.array(S.ACTIVATIONS)[...])
    shard.write_bytes(shard.read_bytes()[:100])
    assert main(["status", str(full.path)]) == 0  # cheap status cannot see it: files are all there
    capsys.readouterr()
    assert main(["verify", str(full.path)]) == 1
    out = capsys.readouterr().out
    assert "ERROR: activations/c/0/1/1/0/0 (layer 0 ar samples 4:8): cannot be decoded" in out
    redo = f"`sae-store verify {full.path} --repair && sae-store extract {full.path} --model synthetic`"
    assert redo in out
    assert out.rstrip().endswith("store NOT OK")

    assert main(["verify", str(full.path), "--repair"]) == 1
    assert (
        f"cleared activations/c/0/1/1/0/0 (layer 0 ar samples 4:8); `sae-store extract {full.path} --model "
        "synthetic` redoes it\n"
    ) in capsys.readouterr().out
    flags = open_store(full.path).read_flags()
    expected = np.ones_like(flags)
    expected[0, 1, 4:8] = False
    np.testing.assert_array_equal(flags, expected)
    assert not shard.exists()
    # what extraction then does: rewrite that block; the store is whole again
    fill_block(full, 0, "ar", full.blocks[1], np.random.default_rng(1))
    assert main(["verify", str(full.path)]) == 0
    after = np.asarray(full.array(S.ACTIVATIONS)[...])
    mask = np.ones(before.shape[:3], bool)
    mask[0, 1, 4:8] = False
    np.testing.assert_array_equal(after[mask], before[mask])


def test_nonfinite_and_float16_overflow_are_counted_per_layer(full, capsys):
    n_tokens = np.asarray(full.array(S.N_TOKENS)[...])
    values = np.asarray(full.array(S.ACTIVATIONS)[1, 0, 0:4])
    values[0, 0, :3] = np.nan  # three NaN in real tokens of sample 0
    values[1, n_tokens[0, 1] :, :] = np.inf  # padding positions do not count
    values[2, 1, 5] = -1e5  # beyond float16
    values[3, 2, 0:2] = 7e4
    full.write(S.ACTIVATIONS, values, start=0, layer=1, language="en")
    full.write(S.NONFINITE, np.array([3, 0, 0, 0], np.int32), start=0, layer=1, language="en")
    report = verify_store(full)
    health = {h.layer: h for h in report.layers}
    assert (health[0].nonfinite, health[0].float16_overflow) == (0, 0)
    assert (health[1].nonfinite, health[1].recorded_nonfinite, health[1].float16_overflow) == (3, 3, 3)
    assert health[1].max_abs == pytest.approx(1e5) and health[1].max_abs > FLOAT16_MAX
    assert main(["verify", str(full.path)]) == 1
    out = capsys.readouterr().out
    assert "ERROR: layer 1: 3 NaN/inf values in flagged samples (the store records 3)" in out
    assert "layer 1: 3 values beyond float16's range (|x| up to 1e+05)" in out
    assert main(["status", str(full.path)]) == 0
    assert "non-finite values recorded: layer 1: 3" in capsys.readouterr().out
    assert main(["du", str(full.path)]) == 0
    assert "non-finite values recorded: layer 1: 3" in capsys.readouterr().out
    assert main(["status", str(full.path), "--verify"]) == 1
