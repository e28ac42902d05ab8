"""``sae-store make-tiny-model``."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from sae_store.errors import SaeStoreError
from sae_store.models.config import TinyModelConfig
from sae_store.models.loader import model_identity
from sae_store_cli import model_cmds
from sae_store_cli.options import build


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in model_cmds.COMMANDS.values():
        add(subparsers)
    return parser.parse_args(argv)


def test_make_tiny_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiny"
    args = _parse(["make-tiny-model", str(out), "--seed", "3", "--n-layers", "2", "--hidden", "32"])
    assert args.func(args) == 0
    assert f"to {out}" in capsys.readouterr().out
    identity = model_identity(out)
    assert (identity["n_layers"], identity["hidden_size"]) == (2, 32)


def test_defaults_and_errors(tmp_path: Path) -> None:
    args = _parse(["make-tiny-model", str(tmp_path)])
    config = build(args, TinyModelConfig)
    assert (config.seed, config.num_layers, config.hidden_size, args.overwrite) == (0, 4, 64, False)
    old = _parse(["make-tiny-model", str(tmp_path), "--layers", "3"])  # the old name of --n-layers
    assert build(old, TinyModelConfig).num_layers == 3
    (tmp_path / "x").write_text("x")
    with pytest.raises(SaeStoreError, match="is not empty"):
        args.func(args)
