"""The logit lens equals the direct computation: decoder row -> the model's final norm -> unembedding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sae_store.analyze.config import LogitLensConfig
from sae_store.analyze.logit_lens import logit_lens, run_logit_lens
from sae_store.models.loader import load_model
from sae_store.train.config import SaeConfig
from sae_store.train.sae import build_sae


def _direct(model_dir: Path, rows: torch.Tensor) -> np.ndarray:
    """Logits of each row, computed the plain way with the model's own modules."""
    loaded = load_model(model_dir, device="cpu", dtype="float32")
    with torch.no_grad():
        normed = loaded.model.model.language_model.norm(rows)
        return loaded.model.lm_head(normed).numpy()


def test_logit_lens_equals_direct_computation(tiny_model_dir: Path) -> None:
    sae = build_sae(SaeConfig(d_in=64, d_sae=48, architecture="relu"), seed=3)
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.1, 5.0, 48)[:, None])  # norms differ: the norm is not a no-op
    run = run_logit_lens(
        {2: sae}, str(tiny_model_dir), LogitLensConfig(lens_k=6, vocab_block=256, device="cpu")
    )
    ds = run.dataset.sel(layer=2)
    logits = _direct(tiny_model_dir, sae.W_dec.detach().float())
    V = logits.shape[1]
    for f in (0, 17, 47):
        order = np.argsort(-logits[f], kind="stable")
        np.testing.assert_array_equal(ds.promoted_id.values[f], order[:6])
        np.testing.assert_allclose(ds.promoted_logit.values[f], logits[f, order[:6]], rtol=1e-5, atol=1e-6)
        low = np.argsort(logits[f], kind="stable")[:6]
        np.testing.assert_array_equal(ds.suppressed_id.values[f], low)
        for w, token in enumerate(ds.term_token_id.values):
            expected = 1 + int(np.sum(logits[f] > logits[f, token] + 1e-6 * abs(logits[f, token])))
            assert abs(int(ds.term_rank.values[f, w]) - expected) <= 1, (f, w)
            assert 1 <= ds.term_rank.values[f, w] <= V
    terms = dict(zip(ds.term_text.values, ds.term_language.values, strict=True))
    assert terms["man"] == "en" and terms["woman"] == "en" and terms["رجل"] == "ar"
    assert run.payload["vocab_size"] == V


@pytest.mark.parametrize("block", [1, 5, 64])
def test_blocks_and_ranks_match_one_product(block: int) -> None:
    """Walking the vocabulary in blocks gives the same top/bottom k and exact ranks as one product."""
    g = torch.Generator().manual_seed(0)
    w_dec, w_U = torch.randn(9, 8, generator=g), torch.randn(100, 8, generator=g)
    terms = np.array([0, 13, 99, 50])
    lens = logit_lens(w_dec, lambda x: x * 2.0, w_U, terms, k=4, block=block)
    logits = ((w_dec * 2.0) @ w_U.T).numpy()
    np.testing.assert_array_equal(lens.promoted_id, np.argsort(-logits, axis=1)[:, :4])
    np.testing.assert_array_equal(lens.suppressed_id, np.argsort(logits, axis=1)[:, :4])
    ranks = 1 + (logits[:, None, :] > logits[:, terms][:, :, None]).sum(-1)
    np.testing.assert_array_equal(lens.term_rank, ranks)
