"""Training runs on a store: the SAE folder, exact resume after a killed process, and refusals."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sae_store.errors import ConfigError, DataError, SaeStoreError
from sae_store.store import schema as S
from sae_store.train import run as run_module
from sae_store.train.formats import load_sae
from sae_store.train.run import CHECKPOINT_DIR, CHECKPOINT_FILE, save_checkpoint, train_layer
from sae_store_cli.main import main

from .conftest import fill_store, run_config

TIMING = {"data_wait_s", "compute_s", "steps_per_s"}


def _records(folder: Path) -> list[dict]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(ln).items() if k not in TIMING} for ln in lines]


def test_train_layer_writes_a_complete_sae_folder(filled_store, tmp_path):
    store = filled_store()
    config = run_config(layer=1, trainer_steps=60, trainer_checkpoint_every=20)
    result = train_layer(store, config, tmp_path / "saes", progress=False)
    folder = tmp_path / "saes" / "layer_1"
    assert result.folder == folder and not result.skipped and result.resumed_from is None
    assert sorted(p.name for p in folder.iterdir()) == [
        "cfg.json",
        "metrics.jsonl",
        "sae_weights.safetensors",
        "sparsity.safetensors",
    ]  # checkpoint removed
    records = _records(folder)
    assert [r["step"] for r in records] == [20, 40, 60, 60] and records[-1]["split"] == "val"
    assert (
        records[-1]["tokens"] == result.metrics["tokens"] == 2 * (10 + 12)
    )  # 2 held-out samples, 2 languages
    cfg = json.loads((folder / "cfg.json").read_text())
    prov = cfg["sae_store"]
    assert prov["layer"] == 1 and prov["languages"] == ["en", "ar"] and prov["roles"] == ["image", "text"]
    assert prov["store"] == str(store.path.resolve()) and prov["norm_scale"] > 0
    assert prov["metrics"]["val"] == result.metrics
    assert prov["run_config"]["sae"]["d_in"] == 16 and prov["data"]["train_samples"] == 22
    assert cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_post"
    loaded = load_sae(folder)
    assert loaded.sae.d_in == 16 and loaded.sae.d_sae == 64
    assert load_file(str(folder / "sparsity.safetensors"))["sparsity"].shape == (64,)

    with pytest.raises(SaeStoreError, match=r"layer_1' already holds a trained SAE; pass --overwrite"):
        train_layer(store, config, tmp_path / "saes", progress=False)
    again = train_layer(store, config, tmp_path / "saes", resume=True, progress=False)
    assert again.skipped and again.metrics == {}
    redo = train_layer(store, config, tmp_path / "saes", overwrite=True, progress=False)
    assert redo.metrics == result.metrics  # deterministic for a seed


@pytest.mark.parametrize("device_memory", ["50%", "0"])
def test_killed_run_resumes_exactly(filled_store, tmp_path, device_memory):
    """SIGKILL a training process after its first checkpoint; the resumed run equals an uninterrupted one."""
    store = filled_store()
    steps, every = 240, 30
    # the layer resident on the device (the host here), or, with no device memory and a memory budget
    # below the data size, shard blocks streamed through the shuffle buffer with prefetch
    args = [
        "train",
        str(store.path),
        "--device-memory",
        device_memory,
        "--layer",
        "1",
        "--k",
        "3",
        "--expansion",
        "4",
        "--steps",
        str(steps),
        "--batch-size",
        "16",
        "--lr",
        "3e-3",
        "--memory-budget",
        "28000",
        "--checkpoint-every",
        str(every),
        "--log-every",
        "25",
        "--no-progress",
    ]
    killed_out = tmp_path / "killed"
    ckpt = killed_out / "layer_1" / CHECKPOINT_DIR / CHECKPOINT_FILE
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sae_store_cli", *args, "--out", str(killed_out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    assert ckpt.exists() and not (killed_out / "layer_1" / "cfg.json").exists()

    config = run_config(
        layer=1,
        data_batch_size=16,
        data_memory_budget=28000,
        data_device_memory=device_memory,
        trainer_steps=steps,
        trainer_checkpoint_every=every,
        trainer_log_every=25,
        trainer_lr_warmup_steps=min(100, steps // 10),  # what the CLI chooses
    )
    resumed = train_layer(store, config, killed_out, resume=True, progress=False)
    assert (
        resumed.resumed_from is not None
        and resumed.resumed_from % every == 0
        and resumed.resumed_from < steps
    )
    straight = train_layer(store, config, tmp_path / "straight", progress=False)
    a = load_file(str(killed_out / "layer_1" / "sae_weights.safetensors"))
    b = load_file(str(tmp_path / "straight" / "layer_1" / "sae_weights.safetensors"))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert _records(killed_out / "layer_1") == _records(tmp_path / "straight" / "layer_1")
    assert resumed.metrics == straight.metrics


def _fake_checkpoint(folder: Path, config) -> Path:
    path = folder / "layer_1" / CHECKPOINT_DIR / CHECKPOINT_FILE
    save_checkpoint(path, {"run_config": config.to_dict(), "scale": 1.0, "data": {}, "trainer": {}})
    return path


def test_resume_refusals(filled_store, make_store, tmp_path):
    store = filled_store()
    config = run_config(layer=1)
    with_d_in = replace(config, sae=replace(config.sae, d_in=16))
    out = tmp_path / "saes"
    path = _fake_checkpoint(out, with_d_in)
    with pytest.raises(
        SaeStoreError, match=r"holds a checkpoint of an unfinished run; pass --resume to continue"
    ):
        train_layer(store, config, out, progress=False)

    wider = make_store(8, samples_per_shard=4, layers=[1], hidden_size=24)
    fill_store(wider)
    with pytest.raises(
        ConfigError, match=r"was trained with d_in=16, but the store's layer has hidden size 24"
    ):
        train_layer(wider, config, out, resume=True, progress=False)

    other_k = run_config(layer=1, sae_k=5)
    with pytest.raises(
        ConfigError, match=r"was made with other settings \(sae.k: 3 -> 5\); resume with the same"
    ):
        train_layer(store, other_k, out, resume=True, progress=False)

    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(SaeStoreError, match=r"checkpoint '.*state.pt' is unreadable \(.*\); delete it"):
        train_layer(store, config, out, resume=True, progress=False)


def test_cli_train_and_refusals(filled_store, make_store, tmp_path, monkeypatch, capsys):
    store = filled_store()
    out = tmp_path / "saes"
    base = [
        "train",
        str(store.path),
        "--out",
        str(out),
        "--k",
        "3",
        "--expansion",
        "4",
        "--steps",
        "20",
        "--batch-size",
        "32",
        "--no-progress",
    ]
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    assert main(base) == 0
    assert "layer 0: saved" in capsys.readouterr().out and (out / "layer_0" / "cfg.json").exists()
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")

    def refused(extra: list[str], pattern: str) -> None:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("sae-store train: error: "), err
        assert re.search(pattern, err), err

    refused([], r"no layer given: pass --layer L")
    refused(["--layer", "7"], r"layer 7 is not in the store; it holds layers \[0, 1\]")
    # options of a run of layer 1 (which the store has), and the error each gets
    bad_options = {
        "--arch gated": r"--arch must be one of \['topk', 'batchtopk', 'relu', "
        r"'jumprelu', 'matryoshka_batchtopk'\], got 'gated'",
        "--b-dec-init median": r"--b-dec-init must be one of \['mean', 'zeros'\], got 'median'",
        "--k 100": r"k=100 is larger than d_sae=64",
        "--lr 0": r"lr must be a positive number, got 0.0",
        "--lr=-1e-3": r"lr must be a positive number, got -0.001",
        "--lr-warmup-steps 30": r"the learning-rate schedule \(30 warm-up steps \+ 4 decay steps\) is longer "
        r"than the run \(20 steps\)",
        "--matryoshka-widths 8,x": r"--matryoshka-widths must be a list of positive integers, got '8,x'",
        "--device tpu:0": r"--device must be auto, cpu, cuda or cuda:N, got 'tpu:0'",
    }
    if not torch.cuda.is_available():
        unavailable = (
            f"sae-store train: error: Device 'cuda' requested but CUDA is not available (torch "
            f"{torch.__version__}, torch.cuda.is_available() is False): use --device auto (a GPU when "
            "there is one, else the CPU) or --device cpu, or run on a GPU node with a CUDA build of torch.\n"
        )
        bad_options["--device cuda"] = "^" + re.escape(unavailable) + r"\Z"  # the whole error: one line
    for options, pattern in bad_options.items():
        refused(["--layer", "1", *options.split()], pattern)
    assert not (out / "layer_1").exists()  # refused runs leave nothing behind
    refused(
        ["--layer", "1", "--roles", "image,pad"],
        r"roles must be distinct names from \['image', 'text', 'special'\]",
    )
    partial = make_store(8, samples_per_shard=4, layers=[0], hidden_size=16)
    fill_store(partial, blocks=[0])
    assert (
        main(["train", str(partial.path), "--out", str(tmp_path / "other"), "--layer", "0", "--no-progress"])
        == 2
    )
    assert (
        "layer 0 is not fully extracted: en samples 4:8; ar samples 4:8 are not complete"
        in capsys.readouterr().err
    )


def test_quality_metrics_state_their_tokens_and_window(filled_store, tmp_path):
    store = filled_store()
    config = run_config(layer=1, trainer_steps=60, trainer_dead_window_tokens=10 * 64)
    result = train_layer(store, config, tmp_path / "saes", progress=False)
    m = result.metrics
    assert m["dead_fraction_tokens"] == m["tokens"] == 2 * (10 + 12)  # all held-out tokens (< 100k)
    assert m["dead_window_tokens"] == 10 * 64  # the run (60 x 64 tokens) is longer than the window
    assert 0 <= m["dead_fraction_train_window"] <= 1 and 0 <= m["dead_fraction"] <= 1
    cfg = json.loads((tmp_path / "saes" / "layer_1" / "cfg.json").read_text())
    assert cfg["sae_store"]["metrics"]["val"]["dead_window_tokens"] == 10 * 64
    short = run_config(layer=0, trainer_steps=60)  # default window (200k tokens) > the 3,840-token run
    assert (
        train_layer(store, short, tmp_path / "saes", progress=False).metrics["dead_window_tokens"] == 60 * 64
    )


def test_failed_runs_leave_no_layer_folder(filled_store, tmp_path, monkeypatch):
    store = filled_store()
    lay = store.layout
    nan = np.full((4, lay.max_tokens, lay.hidden_size), np.nan, dtype=np.float32)
    for b in store.blocks:
        for lang in lay.languages:
            store.write(S.ACTIVATIONS, nan[: b.stop - b.start], start=b.start, layer=1, language=lang)
    out = tmp_path / "saes"
    with pytest.raises(
        DataError, match=r"cannot normalise layer 1: no finite vector among its selected tokens"
    ):
        train_layer(store, run_config(layer=1), out, progress=False)
    assert not (out / "layer_1").exists()
    with pytest.raises(ConfigError, match=r"k=100 is larger than d_sae=64"):
        train_layer(store, run_config(layer=0, sae_k=100), out, progress=False)
    assert not (out / "layer_0").exists()

    class Stop(Exception):
        pass

    def fail(*args, **kwargs):
        raise Stop("interrupted before the first checkpoint")

    monkeypatch.setattr(run_module, "fit_together", fail)
    with pytest.raises(Stop):
        train_layer(store, run_config(layer=0), out, progress=False)
    assert not (out / "layer_0").exists()
