"""A toy SAE architecture, one class plus one registration, trained from the command line and the YAML
like a built-in one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from sae_store.errors import ConfigError
from sae_store.jobs.config import config_from_dict
from sae_store.jobs.steps import get_step
from sae_store.train.architectures import ARCHITECTURES, Architecture, register_architecture
from sae_store.train.config import SaeConfig
from sae_store.train.formats import load_sae
from sae_store.train.sae import SparseAutoencoder
from sae_store_cli.main import main
from tests.conftest import cli_help


class ShiftedReluSAE(SparseAutoencoder):
    """A toy architecture: ReLU latents shifted down by a constant (no sparsity penalty)."""

    def activation(self, hidden_pre: torch.Tensor) -> torch.Tensor:
        return (hidden_pre - 0.01).relu()


@pytest.fixture
def toy_architecture() -> Iterator[None]:
    register_architecture(Architecture("shifted_relu", ShiftedReluSAE, "standard"))
    yield
    ARCHITECTURES.unregister("shifted_relu")


def test_a_toy_architecture_is_trained_from_the_cli_and_the_yaml(
    toy_architecture: None, filled_store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "shifted_relu" in cli_help(["train"], capsys)
    cfg = config_from_dict({"paths": {"root": str(tmp_path)}, "sae": {"arch": "shifted_relu"}})
    assert "--arch shifted_relu" in " ".join(get_step("train").args(cfg))
    assert SaeConfig(architecture="shifted_relu").architecture == "shifted_relu"
    store = filled_store()
    out = tmp_path / "saes"
    argv = ["train", str(store.path), "--layer", "0", "--out", str(out), "--arch", "shifted_relu",
            "--expansion", "2", "--steps", "20", "--batch-size", "32", "--no-progress"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    cfg_json = json.loads((out / "layer_0" / "cfg.json").read_text())
    assert cfg_json["architecture"] == "standard" and cfg_json["sae_store"]["architecture"] == "shifted_relu"
    assert load_sae(out / "layer_0").sae.d_sae == 32


def test_an_architecture_registered_twice_is_refused_with_both_places() -> None:
    with pytest.raises(
        ConfigError, match=r"SAE architecture 'topk' is registered twice: at .*architectures.py:\d+ and at "
    ):
        register_architecture(Architecture("topk", ShiftedReluSAE, "topk"))
