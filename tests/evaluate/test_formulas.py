"""The reconstruction formulas against direct numpy computations: the explained variance on data with a
large constant offset (where SAEBench's legacy value differs), the legacy value itself, additivity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sae_store.train.metrics import ActiveLatents, ReconstructionTotals, legacy_sum, token_totals


def _data(n: int = 600, d: int = 12, offset: float = 1e4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = offset + rng.normal(size=(n, d)) * rng.uniform(0.5, 3, size=d)
    x_hat = x + rng.normal(scale=0.4, size=(n, d))
    return x, x_hat


def _measure(
    x: np.ndarray, x_hat: np.ndarray, groups: np.ndarray, n_groups: int
) -> list[ReconstructionTotals]:
    xt, xh = torch.from_numpy(x), torch.from_numpy(x_hat)
    latents = ActiveLatents.of(torch.from_numpy(np.abs(x[:, :3]) * (np.arange(3) > 0)))  # any, >= 0
    return token_totals(xt, latents, xh, torch.from_numpy(groups), n_groups, xt[:50].mean(0)).groups


def test_explained_variance_is_one_minus_sse_over_the_deviation_from_the_per_dimension_mean() -> None:
    x, x_hat = _data()
    m = _measure(x, x_hat, np.zeros(len(x), dtype=np.int64), 1)[0].metrics()
    expected = 1 - ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert m["explained_variance"] == pytest.approx(expected, rel=1e-9)
    assert m["fvu"] == pytest.approx(1 - expected, rel=1e-9)
    assert m["mse"] == pytest.approx(((x - x_hat) ** 2).sum(1).mean(), rel=1e-12)
    # variance about zero (the bug SAELens fixed in its PR #665) would give nearly 1 here
    about_zero = 1 - ((x - x_hat) ** 2).sum() / (x**2).sum()
    assert about_zero > 0.999999 and expected < 0.99


def test_the_legacy_value_is_saebench_per_token_ratio_with_the_batch_mean() -> None:
    x, x_hat = _data(offset=3.0)
    err = ((x - x_hat) ** 2).sum(1)
    mask = np.arange(len(x)) % 3 != 0
    total, count = legacy_sum(torch.from_numpy(x), torch.from_numpy(err), torch.from_numpy(mask))
    xs = x[mask]
    expected = (1 - err[mask] / ((xs - xs.mean(0)) ** 2).sum(1)).mean()
    assert count == mask.sum()
    assert total / count == pytest.approx(expected, rel=1e-12)
    correct = 1 - err[mask].sum() / ((xs - xs.mean(0)) ** 2).sum()
    assert abs(total / count - correct) > 1e-3  # the two formulas differ on the same data


def test_totals_of_groups_add_up_to_the_totals_of_their_union() -> None:
    x, x_hat = _data()
    groups = np.arange(len(x)) % 3
    parts = _measure(x, x_hat, groups, 3)
    whole = _measure(x, x_hat, np.zeros(len(x), dtype=np.int64), 1)[0]
    summed = parts[0] + parts[1] + parts[2]
    a, b = summed.metrics(), whole.metrics()
    for key in b:
        assert a[key] == pytest.approx(b[key], rel=1e-9, nan_ok=True), key
    assert [p.tokens for p in parts] == [200, 200, 200]


def test_identity_zero_and_mean_reconstructions() -> None:
    x, _ = _data(offset=5.0)
    zeros = np.zeros(len(x), dtype=np.int64)
    identity = _measure(x, x.copy(), zeros, 1)[0].metrics()
    assert identity["explained_variance"] == 1.0 and identity["cossim"] == pytest.approx(1.0)
    zero = _measure(x, np.zeros_like(x), zeros, 1)[0].metrics()
    assert zero["explained_variance"] == pytest.approx(
        1 - (x**2).sum() / ((x - x.mean(0)) ** 2).sum(), rel=1e-9
    )
    assert zero["cossim"] == 0.0  # x_hat = 0: no direction
    mean = _measure(x, np.broadcast_to(x.mean(0), x.shape).copy(), zeros, 1)[0].metrics()
    assert mean["explained_variance"] == pytest.approx(0.0, abs=1e-9)


def test_an_empty_group_reports_only_its_zero_tokens() -> None:
    x, x_hat = _data(n=30)
    parts = _measure(x, x_hat, np.zeros(len(x), dtype=np.int64), 2)
    assert parts[1].tokens == 0 and parts[1].metrics() == {"tokens": 0}


def test_the_sparse_decode_equals_the_dense_product() -> None:
    rng = np.random.default_rng(2)
    latents = torch.from_numpy(np.where(rng.random((50, 400)) < 0.02, rng.random((50, 400)), 0.0)).float()
    latents[7] = 0.0  # a token without an active latent
    W_dec, b_dec = torch.randn(400, 24), torch.randn(24)
    active = ActiveLatents.of(latents)
    assert len(active.rows) == int((latents > 0).sum())
    torch.testing.assert_close(active.decode(W_dec, b_dec), latents @ W_dec + b_dec, rtol=1e-5, atol=1e-5)
    ones, group = torch.ones(50, 24), torch.zeros(50, dtype=torch.long)
    totals = token_totals(ones, active, ones, group, 1, torch.zeros(24)).groups[0].metrics()
    assert totals["l0"] == pytest.approx(float((latents > 0).sum(1).double().mean()))
    assert totals["l1"] == pytest.approx(float(latents.double().sum(1).mean()))
