"""Several SAEs of one layer from one pass over the data: each as trained alone, resumable, and
refused when its entries cannot share the batches."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from safetensors.torch import load_file

from sae_store.errors import ConfigError
from sae_store.train import run as run_module
from sae_store.train.run import train_layer, train_sweep
from sae_store.train.sweep import check_sweep, sweep_entries
from sae_store_cli.main import main

from .conftest import run_config

TIMING = {"data_wait_s", "compute_s", "steps_per_s"}


def _same_sae(a: Path, b: Path) -> None:
    x, y = (load_file(str(p / "sae_weights.safetensors")) for p in (a, b))
    assert x.keys() == y.keys() and all(x[k].equal(y[k]) for k in x), a
    records = [
        [{k: v for k, v in json.loads(ln).items() if k not in TIMING} for ln in (p / "metrics.jsonl").open()]
        for p in (a, b)
    ]
    assert records[0] == records[1]


def _entries() -> list:
    base = run_config(layer=1, trainer_steps=40, trainer_checkpoint_every=10, trainer_log_every=10)
    return [
        ("k=2", replace(base, sae=replace(base.sae, k=2))),
        ("k=3,arch=batchtopk", replace(base, sae=replace(base.sae, architecture="batchtopk"))),
        ("steps=25", replace(base, trainer=replace(base.trainer, steps=25, lr_warmup_steps=2))),  # ends early
    ]


@pytest.mark.parametrize("device_memory", ["50%", "0"])  # resident, and streamed
def test_each_sae_of_a_pass_is_the_one_trained_alone(filled_store, tmp_path, device_memory):
    store = filled_store()
    entries = [
        (name, replace(c, data=replace(c.data, device_memory=device_memory, memory_budget=28000)))
        for name, c in _entries()
    ]
    results = train_sweep(
        store, [c for _, c in entries], [tmp_path / "sweep" / n for n, _ in entries], progress=False
    )
    for (name, config), together in zip(entries, results, strict=True):
        alone = train_layer(store, config, tmp_path / "alone" / name, progress=False)
        assert together.folder == tmp_path / "sweep" / name / "layer_1"
        assert together.metrics == alone.metrics
        _same_sae(together.folder, alone.folder)


def test_an_interrupted_pass_resumes_to_the_same_saes(filled_store, tmp_path, monkeypatch):
    store = filled_store()
    entries = _entries()
    configs, straight = [c for _, c in entries], [tmp_path / "straight" / n for n, _ in entries]
    train_sweep(store, configs, straight, progress=False)

    class Killed(Exception):
        pass

    saved = run_module.save_checkpoint
    writes = []

    def save_then_die(path, state):  # killed between the two 40-step SAEs' checkpoints of step 30
        if len(writes) == 7:
            raise Killed
        writes.append(path)
        saved(path, state)

    monkeypatch.setattr(run_module, "save_checkpoint", save_then_die)
    out = [tmp_path / "killed" / n for n, _ in entries]
    with pytest.raises(Killed):
        train_sweep(store, configs, out, progress=False)
    monkeypatch.setattr(run_module, "save_checkpoint", saved)
    steps = [
        run_module.load_checkpoint(o / "layer_1" / "checkpoint" / "state.pt")["trainer"]["step"]
        for o in out[:2]
    ]
    assert steps == [30, 20] and (out[2] / "layer_1" / "cfg.json").is_file()  # the 25-step run was saved
    results = train_sweep(store, configs, out, resume=True, progress=False)
    assert [(r.resumed_from, r.skipped) for r in results] == [(30, False), (20, False), (None, True)]
    for a, b in zip(out, straight, strict=True):
        _same_sae(a / "layer_1", b / "layer_1")


def test_entries_that_cannot_share_a_pass_are_refused_by_name(filled_store, tmp_path):
    base = run_config(layer=1)
    other_layer = run_config(layer=0)
    wider = replace(base, sae=replace(base.sae, d_in=24))
    smaller_batches = replace(base, data=replace(base.data, batch_size=32))
    on_gpu = replace(base, trainer=replace(base.trainer, device="cuda"))
    cases = [
        ([base, other_layer, base], ["a", "b", "c"],
         "a sweep's entries need one layer, got 'a', 'c': 1; 'b': 0; run one sweep per layer"),
        ([base, wider], ["a", "b"],
         "a sweep's entries need one input width (d_in), got 'a': 16; 'b': 24; the store's layer has width "
         "16: leave d_in unset (0)"),
        ([wider], ["a"], "a sweep's entries need one input width (d_in), got 'a': 24; the store's layer"),
        ([base, smaller_batches], ["a", "b"],
         "a sweep's entries need one data settings, got 'a': batch_size=64; 'b': batch_size=32; a sweep's "
         "SAEs share their batches: only SAE and optimisation settings may differ"),
        ([base, on_gpu], ["a", "b"], "a sweep's entries need one device, got 'a': auto; 'b': cuda"),
        ([base, base], ["a", "a"], "several entries of the sweep are named ['a'] (one folder each)"),
        ([], [], "a sweep needs at least one SAE to train"),
    ]  # fmt: skip
    for configs, names, message in cases:
        with pytest.raises(ConfigError, match=re.escape(message)):
            check_sweep(configs, names, 16)
    store = filled_store()
    with pytest.raises(ConfigError, match=r"need one layer, got '.*a': 1; '.*b': 0"):
        train_sweep(store, [base, other_layer], [tmp_path / "a", tmp_path / "b"], progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_sweep_specs_expand_to_the_product_of_their_values():
    base = run_config(layer=1)
    entries = sweep_entries(base, ["k=2,3", "arch=topk,relu", "lr=1e-3", "seed=4"])
    assert [n for n, _ in entries] == [
        "k=2,arch=topk,lr=1e-3,seed=4",
        "k=2,arch=relu,lr=1e-3,seed=4",
        "k=3,arch=topk,lr=1e-3,seed=4",
        "k=3,arch=relu,lr=1e-3,seed=4",
    ]
    c = entries[3][1]
    assert (c.sae.k, c.sae.architecture, c.trainer.lr, c.trainer.seed) == (3, "relu", 1e-3, 4)
    assert c.data == base.data  # the data's seed stays: the SAEs share their batches
    refusals = {
        "k": "--sweep 'k' is not SETTING=VALUE,VALUE,...; e.g. --sweep k=32,64,128",
        "batch-size=8,16": "--sweep batch-size is not a setting a sweep can vary: its SAEs share the layer, "
        "the data settings and the device; choose from [",
        "device=cpu": "--sweep device is not a setting a sweep can vary",
        "k=x": "--sweep k must be a positive integer, got 'x'",
        "arch=topk,gated": "--sweep arch must be one of ['topk', 'batchtopk', 'relu', 'jumprelu', "
        "'matryoshka_batchtopk'], got 'gated'",
        "lr=0": "--sweep lr must be a positive number, got 0.0",
    }
    for spec, message in refusals.items():
        with pytest.raises(ConfigError, match=re.escape(message)):
            sweep_entries(base, [spec])
    with pytest.raises(ConfigError, match=re.escape("--sweep k is given twice; list all its values")):
        sweep_entries(base, ["k=2", "k=3"])


def test_cli_sweep(filled_store, tmp_path, capsys):
    store = filled_store()
    out = tmp_path / "saes"
    args = ["train", str(store.path), "--layer", "1", "--out", str(out), "--expansion", "4", "--steps", "20",
            "--batch-size", "32", "--no-progress"]  # fmt: skip
    assert main([*args, "--sweep", "k=2,3", "--sweep", "lr=1e-3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split(";")[0] for ln in lines] == [
        f"layer 1: saved {out / 'k=2,lr=1e-3' / 'layer_1'}",
        f"layer 1: saved {out / 'k=3,lr=1e-3' / 'layer_1'}",
    ]
    assert main([*args, "--sweep", "k=2,3", "--sweep", "lr=1e-3", "--resume"]) == 0
    assert capsys.readouterr().out.count("already holds a trained SAE; nothing to do") == 2
    assert main([*args, "--sweep", "roles=image"]) == 2
    assert "--sweep roles is not a setting a sweep can vary" in capsys.readouterr().err
