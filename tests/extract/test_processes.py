"""Separate processes: SIGKILL at several points then resume, and concurrent array tasks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sae_store.extract.config import ExtractConfig
from sae_store.extract.run import extract_activations
from sae_store.models.loader import LoadedModel
from sae_store.store import open_store
from sae_store.store import schema as S

from .conftest import MakeStore
from .helpers import arrays, assert_same_files, cli_env, extract_args

# Runs the real command, after making the process SIGKILL itself at its K-th store write
# (the writes happen in the background writer thread while the model works on the next block).
_KILL_AT_WRITE = """
import os, signal, sys
from sae_store.store.core import ActivationStore
from sae_store_cli.main import main
kill_at, calls, write = int(sys.argv[1]), [0], ActivationStore.write
def counting_write(self, *args, **kwargs):
    calls[0] += 1
    if calls[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    write(self, *args, **kwargs)
ActivationStore.write = counting_write
sys.exit(main(sys.argv[2:]))
"""


def _assert_no_flag_without_data(store: Path, reference: Path) -> None:
    ds, ref = arrays(store), arrays(reference)
    flags = ds[S.COMPLETE]
    assert flags.sum() > 0 and not flags.all()
    # wherever a flag is set, everything of that sample is on disk and right
    np.testing.assert_array_equal(ds[S.ACTIVATIONS][flags], ref[S.ACTIVATIONS][flags])
    np.testing.assert_array_equal(ds[S.MAX_ABS][flags], ref[S.MAX_ABS][flags])
    for name in (S.INPUT_IDS, S.TOKEN_ROLE, S.N_TOKENS):
        done = flags.any(axis=0)
        np.testing.assert_array_equal(ds[name][done], ref[name][done])


# Each language block makes 9 writes (all layers, 5 per-sample arrays, 2 statistics, then the flags):
# kill after the first block's activations, after its flags, and in the middle of a later block.
KILL_POINTS = (3, 10, 22)


@pytest.mark.slow
def test_sigkill_at_several_points_then_resume_gives_the_uninterrupted_store(
    make_store: MakeStore, loaded: LoadedModel, tiny_model_dir: Path, reference: Path
) -> None:
    stores = {k: make_store().path for k in KILL_POINTS}
    procs = {
        k: subprocess.Popen(
            [sys.executable, "-c", _KILL_AT_WRITE, str(k), *extract_args(stores[k], tiny_model_dir)],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for k in KILL_POINTS
    }
    for proc in procs.values():
        out, _ = proc.communicate(timeout=240)
        assert proc.returncode == -9, out
    flags_set = {}
    for k, path in stores.items():
        flags_set[k] = int(arrays(path)[S.COMPLETE].sum())
        if flags_set[k]:
            _assert_no_flag_without_data(path, reference)
        summary = extract_activations(open_store(path), loaded, ExtractConfig(batch_size=2, progress=False))
        assert summary.ok
        assert_same_files(path, reference)
    # the kill points really were before, between and after flags of the first block
    layers, per_block = 4, 4
    assert (
        flags_set[3] == 0 and flags_set[10] == layers * per_block and flags_set[22] == 2 * layers * per_block
    )


@pytest.mark.slow
def test_concurrent_array_tasks_give_the_same_store_as_one_process(
    make_store: MakeStore, tiny_model_dir: Path, reference: Path
) -> None:
    store = make_store().path
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sae_store_cli",
                *extract_args(store, tiny_model_dir, "--task-index", str(i), "--task-count", "3"),
            ],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(3)
    ]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    # each task wrote its own block, in both languages
    assert all("wrote 2 of 2 blocks" in out for out in outputs), outputs
    assert_same_files(store, reference)
