"""``export-saes``: an SAE written in sparsify's or Gemma Scope's layout computes what the original does,
and ``weights_shape`` reads (d_in, d_sae) from a weights file's header in every layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sae_store.train.config import SaeConfig
from sae_store.train.discovery import find_saes
from sae_store.train.formats import load_sae, save_sae, weights_shape
from sae_store_cli.main import main

from .conftest import perturbed_sae


@pytest.mark.parametrize(
    ("architecture", "layout", "fmt"),
    [("topk", "sparsify", "sparsify"), ("relu", "gemma-scope", "gemma_scope"),
     ("jumprelu", "gemma-scope", "gemma_scope"), ("batchtopk", "gemma-scope", "gemma_scope")],
)  # fmt: skip
def test_an_exported_sae_reconstructs_like_the_original(
    tmp_path: Path, architecture: str, layout: str, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = SaeConfig(architecture=architecture, d_in=16, d_sae=48, k=4)
    for layer in (3, 5):
        save_sae(
            perturbed_sae(config, seed=layer, noise=0.1, max_threshold=0.2),
            tmp_path / "saes" / f"layer_{layer}",
        )
    out = tmp_path / "out"
    assert main(["export-saes", "--saes", str(tmp_path / "saes"), "--layout", layout, "--out", str(out)]) == 0
    copies = find_saes(out)
    assert sorted(copies) == [3, 5] and f"layer 5: {copies[5]}" in capsys.readouterr().out
    x = torch.randn(200, 16) * 3 + 1.5
    for layer in (3, 5):
        original, copy = load_sae(tmp_path / "saes" / f"layer_{layer}"), load_sae(copies[layer])
        assert copy.format == fmt
        a, b = original.sae, copy.sae
        torch.testing.assert_close(b.encode(x), a.encode(x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(b.decode(b.encode(x)), a.decode(a.encode(x)), rtol=1e-4, atol=1e-4)
        assert weights_shape(copies[layer]) == weights_shape(tmp_path / "saes" / f"layer_{layer}") == (16, 48)


@pytest.mark.parametrize(
    ("architecture", "layout", "message"),
    [
        ("topk", "gemma-scope", "layer 0's SAE is TopK, which Gemma Scope's JumpReLU layout cannot express; "
         "use --layout sparsify"),
        ("relu", "sparsify", "layer 0's SAE is 'relu'; the sparsify layout holds TopK SAEs only (use "
         "--layout gemma-scope for SAEs with a ReLU or a threshold)"),
    ],
)  # fmt: skip
def test_a_layout_that_cannot_hold_the_sae_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], architecture: str, layout: str, message: str
) -> None:
    save_sae(perturbed_sae(SaeConfig(architecture=architecture, d_in=8, d_sae=16, k=2), seed=0, noise=0.1,
                           max_threshold=0.1), tmp_path / "saes" / "layer_0")  # fmt: skip
    argv = ["export-saes", "--saes", str(tmp_path / "saes"), "--layout", layout, "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == f"sae-store export-saes: error: {message}"
