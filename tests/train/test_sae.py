"""The SAE modules against plain re-computations of their formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sae_store.errors import ConfigError
from sae_store.train.archs.topk import BatchTopKSAE
from sae_store.train.config import SaeConfig
from sae_store.train.sae import DeadLatents, build_sae

from .conftest import perturbed_sae

# float32 forward passes vs float64 numpy references of the same formula
RTOL, ATOL = 1e-5, 1e-5


def _randomised(arch: str, d_in: int = 12, expansion: int = 4, k: int = 3, seed: int = 0, **kw):
    config = SaeConfig(architecture=arch, d_in=d_in, expansion=expansion, k=k, **kw)
    return perturbed_sae(config, seed=seed, noise=0.1, max_threshold=0.5)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _topk_reference(sae, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    hidden = (x - _np(sae.b_dec)) @ _np(sae.W_enc) + _np(sae.b_enc)
    latents = np.zeros_like(hidden)
    top = np.argsort(-hidden, axis=1)[:, :k]
    np.put_along_axis(latents, top, np.maximum(np.take_along_axis(hidden, top, axis=1), 0), axis=1)
    out = latents @ _np(sae.W_dec) + _np(sae.b_dec)
    return latents, out, float(((out - x) ** 2).sum(1).mean())


def test_topk_matches_plain_recomputation():
    sae = _randomised("topk", k=3)
    x = torch.randn(32, 12)
    out = sae(x)
    latents, recon, mse = _topk_reference(sae, _np(x), 3)
    np.testing.assert_allclose(_np(out.latents), latents, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(_np(out.sae_out), recon, rtol=RTOL, atol=ATOL)
    assert out.mse_loss.item() == pytest.approx(mse, rel=RTOL)
    assert out.loss.item() == pytest.approx(mse, rel=RTOL)  # no dead latents given: no AuxK
    assert ((out.latents > 0).sum(1) <= 3).all()
    np.testing.assert_allclose(_np(sae.encode(x)), latents, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("revived", [0, 5])
def test_auxk_loss_reconstructs_residual_from_top_dead_latents(revived):
    """AuxK on the latents listed dead, without those that fired since they were listed."""
    sae = _randomised("topk", k=3, aux_k=4, aux_k_coefficient=0.5)
    x = torch.randn(16, 12)
    listed = torch.arange(0, sae.d_sae, 3)  # 16 latents listed dead
    still = torch.ones(len(listed), dtype=torch.bool)
    still[:revived] = False  # fired since the list was made
    out = sae(x, dead=DeadLatents(listed, still))
    dead = np.zeros(sae.d_sae, dtype=bool)
    dead[_np(listed[still]).astype(int)] = True
    hidden, W_dec = _np(out.hidden_pre), _np(sae.W_dec)
    masked = np.where(dead[None], hidden, -np.inf)
    top = np.argsort(-masked, axis=1)[:, :4]
    acts = np.zeros_like(hidden)
    np.put_along_axis(acts, top, np.take_along_axis(hidden, top, axis=1), axis=1)
    residual = _np(x) - _np(out.sae_out)
    expected = 0.5 * 1.0 * ((acts @ W_dec - residual) ** 2).sum(1).mean()  # scale min(11 or 16 / 4, 1) = 1
    assert out.aux_loss.item() == pytest.approx(expected, rel=1e-5)
    assert out.loss.item() == pytest.approx(out.mse_loss.item() + expected, rel=1e-5)
    few = torch.zeros(len(listed), dtype=torch.bool)
    few[:2] = True  # 2 still dead of aux_k 4: the loss is scaled by 2/4
    two = sae(x, dead=DeadLatents(listed, few)).aux_loss.item()
    masked = np.where(np.isin(np.arange(sae.d_sae), _np(listed[:2]).astype(int))[None], hidden, -np.inf)
    top = np.argsort(-masked, axis=1)[:, :2]
    acts = np.zeros_like(hidden)
    np.put_along_axis(acts, top, np.take_along_axis(hidden, top, axis=1), axis=1)
    assert two == pytest.approx(0.5 * 0.5 * ((acts @ W_dec - residual) ** 2).sum(1).mean(), rel=1e-5)
    sae.eval()
    assert sae(x, dead=DeadLatents(listed, still)).aux_loss.item() == 0.0  # AuxK is a training loss only


def test_batchtopk_keeps_k_per_token_on_average_and_infers_with_threshold():
    sae = _randomised("batchtopk", k=3)
    assert isinstance(sae, BatchTopKSAE)
    x = torch.randn(20, 12)
    out = sae(x)
    assert int((out.latents > 0).sum()) == 3 * 20
    hidden = out.hidden_pre.detach()
    kth = hidden.relu().flatten().topk(60).values.min()
    np.testing.assert_allclose(_np(out.latents), _np(hidden * (hidden >= kth)), rtol=RTOL, atol=ATOL)
    sae.after_step(out)
    smallest = out.latents[out.latents > 0].min().item()
    assert float(sae.topk_threshold) == pytest.approx(0.01 * smallest)
    sae.eval()
    theta = float(sae.topk_threshold)
    h = _np(sae.pre_activation(x))
    np.testing.assert_allclose(_np(sae.encode(x)), np.maximum(h, 0) * (h > theta), rtol=RTOL, atol=ATOL)


def test_relu_penalty_is_l1_weighted_by_decoder_norms():
    sae = _randomised("relu", l1_coefficient=2.0)
    x = torch.randn(10, 12)
    out = sae(x, sparsity_scale=0.25)
    latents = np.maximum((_np(x) - _np(sae.b_dec)) @ _np(sae.W_enc) + _np(sae.b_enc), 0)
    norms = np.linalg.norm(_np(sae.W_dec), axis=1)
    np.testing.assert_allclose(_np(out.latents), latents, rtol=RTOL, atol=ATOL)
    assert out.sparsity_loss.item() == pytest.approx(0.25 * 2.0 * (latents * norms).sum(1).mean(), rel=1e-5)


def test_jumprelu_formula_and_straight_through_gradients():
    bw = 0.2
    sae = _randomised("jumprelu", jumprelu_bandwidth=bw, l0_coefficient=1.5)
    x = torch.randn(50, 12)
    h = _np(sae.pre_activation(x))
    theta = _np(sae.threshold)
    out = sae(x)
    np.testing.assert_allclose(_np(out.latents), h * (h > theta), rtol=RTOL, atol=ATOL)
    assert out.sparsity_loss.item() == pytest.approx(1.5 * (h > theta).sum(1).mean(), rel=1e-6)
    sae.eval()
    np.testing.assert_allclose(_np(sae.encode(x)), np.maximum(h, 0) * (h > theta), rtol=RTOL, atol=ATOL)
    sae.train()

    # d(sum latents)/d(theta) = -(theta/bw) * rect((h - theta)/bw), summed over the batch
    rect = (np.abs((h - theta) / bw) < 0.5).astype(float)
    sae.zero_grad()
    sae(x).latents.sum().backward()
    np.testing.assert_allclose(_np(sae.threshold.grad), (-(theta / bw) * rect).sum(0), rtol=1e-5, atol=1e-6)
    # d(L0 penalty)/d(theta) = -(coef/bw) * rect / batch; no gradient to the encoder from L0
    sae.zero_grad()
    sae(x).sparsity_loss.backward()
    np.testing.assert_allclose(
        _np(sae.threshold.grad), (-(1.5 / bw) * rect).sum(0) / 50, rtol=1e-5, atol=1e-6
    )
    assert float(sae.W_enc.grad.abs().sum()) == 0.0


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "relu", "jumprelu"])
def test_initialisation_encoder_is_decoder_transpose(arch):
    sae = build_sae(SaeConfig(architecture=arch, d_in=8, expansion=2, k=2), seed=3)
    assert torch.equal(sae.W_enc, sae.W_dec.T)
    norms = sae.W_dec.norm(dim=1)
    torch.testing.assert_close(norms, torch.full_like(norms, 1.0))  # relu too (0.1 learned less)
    assert sae.b_enc.abs().sum() == 0 and sae.b_dec.abs().sum() == 0
    again = build_sae(SaeConfig(architecture=arch, d_in=8, expansion=2, k=2), seed=3)
    assert torch.equal(again.W_dec, sae.W_dec)


def test_decoder_norm_handling_per_architecture():
    sae = _randomised("topk")
    sae.W_dec.grad = torch.randn_like(sae.W_dec)
    with torch.no_grad():
        sae.W_dec /= sae.W_dec.norm(dim=1, keepdim=True)
    sae.before_step()
    parallel = (sae.W_dec.grad * sae.W_dec).sum(1)
    assert parallel.abs().max().item() < 1e-5
    with torch.no_grad():
        sae.W_dec.mul_(3.0)
    sae.after_step(sae(torch.randn(4, 12)))
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(sae.d_sae))

    relu = _randomised("relu")
    before = relu.W_dec.detach().clone()
    relu.W_dec.grad = torch.randn_like(relu.W_dec)
    grad = relu.W_dec.grad.clone()
    relu.before_step()
    relu.after_step(relu(torch.randn(4, 12)))
    assert torch.equal(relu.W_dec.grad, grad) and torch.equal(relu.W_dec, before)


@pytest.mark.parametrize("arch", ["topk", "relu", "jumprelu"])
def test_folding_the_input_scale_keeps_latents_and_rescales_output(arch):
    sae = _randomised(arch).eval()
    x = torch.randn(16, 12)
    scale = 0.37
    latents, out = sae.encode(x * scale), sae(x * scale).sae_out
    sae.fold_input_scale(scale)
    torch.testing.assert_close(sae.encode(x), latents, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sae(x).sae_out, out / scale, rtol=1e-5, atol=1e-5)


def test_bad_sae_configs():
    with pytest.raises(
        ConfigError,
        match=r"architecture must be one of \['topk', 'batchtopk', 'relu', "
        r"'jumprelu', 'matryoshka_batchtopk'\], got 'gated'",
    ):
        SaeConfig(architecture="gated")  # type: ignore[arg-type]
    with pytest.raises(
        ConfigError, match=r"k=40 is larger than d_sae=32: a topk SAE cannot keep more latents"
    ):
        SaeConfig(architecture="topk", d_in=8, expansion=4, k=40)
    with pytest.raises(ConfigError, match=r"k=9 is larger than d_sae=8"):
        SaeConfig(architecture="batchtopk", d_in=8, d_sae=8, k=9)
    SaeConfig(architecture="relu", d_in=8, d_sae=8, k=64)  # k is unused by relu
    with pytest.raises(ConfigError, match=r"expansion must be a positive integer, got 0"):
        SaeConfig(expansion=0)
    with pytest.raises(ConfigError, match=r"SaeConfig.d_in is 0"):
        build_sae(SaeConfig())
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['width'\] in SaeConfig"):
        SaeConfig.from_dict({"width": 3})


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "jumprelu", "matryoshka_batchtopk"])
def test_decoder_init_norm_is_kept_in_training_and_folded_away(arch):
    sae = _randomised(arch, decoder_init_norm=0.2)
    with torch.no_grad():
        sae.W_dec.mul_(0.2 / sae.W_dec.norm(dim=1, keepdim=True))
    sae.W_dec.grad = torch.randn_like(sae.W_dec)
    sae.before_step()  # no gradient along the rows: a step cannot change their norm to first order
    assert (sae.W_dec.grad * sae.W_dec).sum(1).abs().max().item() < 1e-5
    with torch.no_grad():  # the renormalisation after a step brings every row back to the chosen norm
        sae.W_dec.mul_(torch.rand(sae.d_sae, 1) + 0.5)
    sae.after_step(sae(torch.randn(32, 12)))
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.full((sae.d_sae,), 0.2))
    sae.eval()
    x = torch.randn(16, 12)
    latents, out = sae.encode(x), sae(x).sae_out
    sae.fold_decoder_norm()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(sae.d_sae))
    torch.testing.assert_close(sae.encode(x), latents * 0.2, rtol=1e-5, atol=1e-5)  # same latents, rescaled
    torch.testing.assert_close(sae(x).sae_out, out, rtol=1e-5, atol=1e-5)  # same reconstruction


def test_initial_decoder_norm_is_a_setting():
    sae = build_sae(SaeConfig(architecture="topk", d_in=8, expansion=2, k=2, decoder_init_norm=0.05), seed=1)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.full((16,), 0.05))
    assert torch.equal(sae.W_enc, sae.W_dec.T)
    relu = build_sae(SaeConfig(architecture="relu", d_in=8, expansion=2, decoder_init_norm=0.5))
    torch.testing.assert_close(relu.W_dec.norm(dim=1), torch.full((16,), 0.5))


def test_matryoshka_loss_sums_every_prefix_reconstruction():
    sae = _randomised("matryoshka_batchtopk", expansion=4, k=5, matryoshka_widths=(6, 18, 48))
    x = torch.randn(20, 12)
    out = sae(x)
    z, W, b = out.latents.detach(), sae.W_dec.detach(), sae.b_dec.detach()
    expected = sum(
        float(((z[:, :w] @ W[:w] + b - x) ** 2).sum(1).mean()) for w in (6, 18, 48)
    )  # inner prefixes plus the full dictionary, as SAELens's Matryoshka BatchTopK
    assert out.mse_loss.item() == pytest.approx(expected, rel=1e-5)
    assert float((out.latents > 0).sum()) <= 5 * 20  # batch top-k: k per token on average
    sae.eval()
    with torch.no_grad():
        evaluated = sae(x)
    full = float(((evaluated.sae_out - x) ** 2).sum(1).mean())
    assert evaluated.mse_loss.item() == pytest.approx(full, rel=1e-6)  # evaluation: the full SAE only


def test_bad_matryoshka_and_norm_settings():
    with pytest.raises(
        ConfigError, match=r"matryoshka_widths must be increasing positive integers ending at d_sae=32"
    ):
        SaeConfig(architecture="matryoshka_batchtopk", d_in=8, expansion=4, k=2, matryoshka_widths=(8, 16))
    with pytest.raises(ConfigError, match=r"matryoshka_widths must be increasing"):
        SaeConfig(
            architecture="matryoshka_batchtopk", d_in=8, expansion=4, k=2, matryoshka_widths=(16, 8, 32)
        )
    with pytest.raises(ConfigError, match=r"decoder_init_norm must be a non-negative number, got -1.0"):
        SaeConfig(decoder_init_norm=-1.0)
    assert SaeConfig(architecture="matryoshka_batchtopk", d_in=8, d_sae=64).widths() == (4, 8, 16, 32, 64)
