"""Run configuration: JSON round trip, validation messages, what may change on resume."""

from __future__ import annotations

import json

import pytest

from sae_store.errors import ConfigError
from sae_store.roles import parse_roles
from sae_store.train import config as config_module
from sae_store.train.config import DataConfig, EncodeConfig, RunConfig, SaeConfig, TrainerConfig

from .conftest import run_config


def test_run_config_round_trips_through_json():
    config = run_config(layer=3, data_languages=("ar",), trainer_adam_betas=(0.8, 0.99))
    again = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.data.languages == ("ar",) and again.trainer.adam_betas == (0.8, 0.99)


def test_differences_ignore_settings_that_do_not_change_the_result():
    base = run_config()
    same = run_config(
        trainer_device="cuda",
        data_read_threads=1,
        data_prefetch=False,
        data_device_memory="0",
        data_memory_budget=1000,
    )  # where the batches come from, not which: a checkpoint's position fixes their order
    assert base.differences(same) == []
    other = run_config(data_batch_size=32, trainer_lr=1e-3, trainer_log_every=7)
    assert base.differences(other) == [  # log steps are when AuxK's dead latents are listed
        "data.batch_size: 64 -> 32",
        "trainer.lr: 0.003 -> 0.001",
        "trainer.log_every: 20 -> 7",
    ]


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 2), (64, 8)])
def test_read_threads_default_to_the_cores_up_to_8(monkeypatch, cores, threads):
    monkeypatch.setattr(config_module, "available_cores", lambda: cores)
    assert DataConfig(layer=0).read_threads == threads
    assert DataConfig(layer=0, read_threads=3).read_threads == 3


def test_roles_parsing():
    assert parse_roles("image") == ("image",)
    assert parse_roles("all") == ("image", "text")
    assert parse_roles("text, special") == ("text", "special")
    with pytest.raises(
        ConfigError, match=r"roles must be distinct names from \['image', 'text', 'special'\]"
    ):
        parse_roles("image,image")
    with pytest.raises(ConfigError, match=r"got \['pad'\]"):
        DataConfig(layer=0, roles=("pad",))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: DataConfig(layer=0, val_fraction=1.0), r"val_fraction must be in \[0, 1\), got 1.0"),
        (lambda: DataConfig(layer=-1), r"layer must be a non-negative integer, got -1"),
        (lambda: DataConfig(layer=0, batch_size=0), r"batch_size must be a positive integer, got 0"),
        (lambda: DataConfig(layer=0, read_threads=0), r"read_threads must be a positive integer, got 0"),
        (lambda: TrainerConfig(lr=0.0), r"lr must be a positive number, got 0.0"),
        (
            lambda: TrainerConfig(b_dec_init="median"),
            r"b_dec_init must be one of \['mean', 'zeros'\], got 'med",
        ),
        (lambda: TrainerConfig(steps=True), r"steps must be a positive integer, got True"),
        (lambda: TrainerConfig(adam_betas=(0.9, 1.0)), r"adam_betas\[1\] must be in \[0, 1\), got 1.0"),
        (lambda: TrainerConfig(lr_decay_fraction=1.5), r"lr_decay_fraction must be in \[0, 1\], got 1.5"),
        (
            lambda: SaeConfig(l1_coefficient=float("nan")),
            r"l1_coefficient must be a non-negative number, got nan",
        ),
        (lambda: EncodeConfig(batch_tokens=0), r"batch_tokens must be a positive integer, got 0"),
        (lambda: EncodeConfig(sae_memory=0), r"sae_memory must be a positive integer, got 0"),
        (
            lambda: RunConfig.from_dict({"sae": {}, "data": {"layer": 0}, "extra": 1}),
            r"unknown run config keys \['extra'\]",
        ),
        (
            lambda: DataConfig.from_dict({"layer": 0, "shuffle": True}),
            r"unknown key\(s\) \['shuffle'\] in DataConfig",
        ),
    ],
)
def test_bad_values_name_the_field(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_every_trainer_knob_goes_from_yaml_to_the_train_command():
    from sae_store.jobs.config import config_from_dict
    from sae_store.jobs.steps import get_step

    sae = {"arch": "matryoshka_batchtopk", "k": 8, "d_sae": 512, "matryoshka_widths": [64, 256, 512],
           "lr": 1e-3, "lr_warmup_steps": 20, "lr_decay_fraction": 0.1, "grad_clip": 0.5,
           "b_dec_init": "zeros", "decoder_init_norm": 0.5, "aux_k": 32, "aux_k_coefficient": 0.0625,
           "dead_window_tokens": 50000,
           "seed": 3, "device": "auto", "autocast_bf16": True}  # fmt: skip
    cfg = config_from_dict({"paths": {"root": "/tmp/run"}, "sae": sae})
    args = get_step("train").args(cfg)
    for flag, value in [("--arch", "matryoshka_batchtopk"), ("--d-sae", "512"), ("--lr", "0.001"),
                        ("--lr-warmup-steps", "20"), ("--lr-decay-fraction", "0.1"), ("--grad-clip", "0.5"),
                        ("--b-dec-init", "zeros"), ("--decoder-init-norm", "0.5"), ("--aux-k", "32"),
                        ("--aux-k-coefficient", "0.0625"),
                        ("--dead-window-tokens", "50000"), ("--matryoshka-widths", "64,256,512"),
                        ("--seed", "3"), ("--device", "auto")]:  # fmt: skip
        assert args[args.index(flag) + 1] == value, flag
    assert "--autocast-bf16" in args
    from sae_store_cli.main import build_parser
    from sae_store_cli.train_cmds import run_config

    parsed = run_config(build_parser().parse_args(["train", "store.zarr", *args[1:]]), layer=0)
    assert (
        parsed.sae.matryoshka_widths == (64, 256, 512)
        and parsed.trainer.autocast_bf16
        and parsed.trainer.dead_window_tokens == 50000
        and parsed.trainer.b_dec_init == "zeros"
    )
