"""The trainer on in-memory batches: recovery of a known sparse dictionary, schedules, metrics,
evaluation and exact continuation from a state dict."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from sae_store.train.config import SaeConfig, TrainerConfig
from sae_store.train.sae import build_sae
from sae_store.train.trainer import Trainer

from .conftest import sparse_codes, sparse_dictionary


def _batches(dictionary: np.ndarray, k: int, batch: int, seed: int = 0) -> Iterator[torch.Tensor]:
    """Endless batches of k-sparse combinations of the dictionary's atoms."""
    rng = np.random.default_rng(seed)
    while True:
        codes = sparse_codes(rng, batch, len(dictionary), k)
        yield torch.from_numpy(codes @ dictionary)


def _recovery(W_dec: torch.Tensor, dictionary: np.ndarray) -> float:
    """Mean over true atoms of the best cosine similarity with a learned decoder row."""
    learned = W_dec.detach().double().numpy()
    learned /= np.linalg.norm(learned, axis=1, keepdims=True)
    return float((dictionary.astype(np.float64) @ learned.T).max(axis=1).mean())


@pytest.mark.parametrize(
    ("arch", "extra", "steps", "min_ev"),
    [
        ("topk", {}, 400, 0.8),
        ("batchtopk", {}, 400, 0.8),
        ("matryoshka_batchtopk", {"matryoshka_widths": (12, 48, 96)}, 400, 0.8),
        # L1 shrinks every active latent, so less variance is explained at the same L0
        ("relu", {"l1_coefficient": 2.0, "sparsity_warmup_steps": 100}, 600, 0.4),
        (
            "jumprelu",
            {"l0_coefficient": 0.5, "sparsity_warmup_steps": 100, "jumprelu_init_threshold": 0.1},
            600,
            0.8,
        ),
    ],
)
def test_recovers_a_known_sparse_dictionary(arch, extra, steps, min_ev):
    d_in, n_atoms, k = 32, 48, 3
    dictionary = sparse_dictionary(n_atoms, d_in, seed=4)
    sae = build_sae(SaeConfig(architecture=arch, d_in=d_in, d_sae=2 * n_atoms, k=k, **extra), seed=0)
    trainer = Trainer(sae, TrainerConfig(steps=steps, lr=4e-3, lr_warmup_steps=50, log_every=200))
    records: list[dict] = []
    trainer.fit(_batches(dictionary, k, 128), on_log=records.append, progress=False)
    score = _recovery(sae.W_dec, dictionary)
    result = trainer.evaluate(b for b, _ in zip(_batches(dictionary, k, 512, seed=9), range(4), strict=False))
    assert score >= 0.9, f"{arch}: mean max-cosine {score:.3f}"
    assert result.metrics["l0"] == pytest.approx(k, rel=0.35), result.metrics
    assert result.metrics["explained_variance"] > min_ev, result.metrics
    assert [r["step"] for r in records] == list(range(200, steps + 1, 200))


def test_lr_and_sparsity_schedules():
    sae = build_sae(SaeConfig(architecture="relu", d_in=4, expansion=2, sparsity_warmup_steps=10))
    t = Trainer(sae, TrainerConfig(steps=100, lr=1.0, lr_warmup_steps=10, lr_decay_fraction=0.2))
    assert [t.lr_at(s) for s in (0, 4, 9, 50, 79)] == [0.1, 0.5, 1.0, 1.0, 1.0]
    assert (
        t.lr_at(80) == pytest.approx(1.0)
        and t.lr_at(90) == pytest.approx(0.5)
        and t.lr_at(99) == pytest.approx(0.05)
    )
    assert t.sparsity_scale(0) == pytest.approx(0.1) and t.sparsity_scale(50) == 1.0
    no_warmup = Trainer(sae, TrainerConfig(steps=10, lr=1.0, lr_warmup_steps=0, lr_decay_fraction=0.0))
    assert {no_warmup.lr_at(s) for s in range(10)} == {1.0}


def test_metrics_records_and_dead_latents():
    d_in = 8
    sae = build_sae(SaeConfig(architecture="topk", d_in=d_in, expansion=4, k=2))
    config = TrainerConfig(steps=30, lr=1e-3, lr_warmup_steps=5, log_every=10, dead_window_tokens=5 * 16)
    trainer = Trainer(sae, config)
    x = torch.randn(16, d_in)
    with torch.no_grad():  # latents 0..3 can never win: their pre-activations are pushed far down
        sae.b_enc[:4] = -1e4
    records: list[dict] = []
    trainer.fit(iter([x] * 30), on_log=records.append, progress=False)
    assert [r["step"] for r in records] == [10, 20, 30]
    r = records[-1]
    assert r["l0"] == 2.0 and r["tokens"] == 30 * 16
    assert r["explained_variance"] == pytest.approx(1 - r["fvu"])
    assert 4 / 32 <= r["dead_fraction_train_window"] < 1 and r["dead_window_tokens"] == 5 * 16
    assert "dead_fraction" not in r  # the held-out metric's name only
    assert bool(trainer.dead_mask()[:4].all())
    # density: each token fires 2 of 32 latents, so the mean density is 2/32; log10 of it is below
    assert r["mean_log10_density"] <= math.log10(2 / 32)
    assert r["data_wait_s"] >= 0 and r["compute_s"] > 0 and r["steps_per_s"] > 0


def test_evaluate_against_plain_computation():
    sae = build_sae(SaeConfig(architecture="relu", d_in=6, expansion=2), seed=1)
    trainer = Trainer(sae, TrainerConfig(steps=1, lr_warmup_steps=0, lr_decay_fraction=0))
    xs = [torch.randn(10, 6), torch.randn(7, 6)]
    result = trainer.evaluate(xs)
    x = torch.cat(xs).double()
    with torch.no_grad():
        latents = sae.encode(x.float()).double()
        err = ((sae.decode(latents.float()).double() - x) ** 2).sum()
    fvu = float(err / ((x - x.mean(0)) ** 2).sum())
    assert result.metrics["tokens"] == 17
    assert result.metrics["fvu"] == pytest.approx(fvu, rel=1e-6)
    assert result.metrics["mse"] == pytest.approx(float(err) / 17, rel=1e-6)
    assert result.metrics["l0"] == pytest.approx(float((latents > 0).sum()) / 17)
    density = (latents > 0).double().mean(0)
    torch.testing.assert_close(result.log10_density, torch.log10(density + 1e-10).float())
    assert result.metrics["dead_fraction"] == pytest.approx(float((density == 0).double().mean()))
    assert sae.training  # back in training mode


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "jumprelu"])
def test_state_dict_continues_exactly(arch):
    def make() -> Trainer:
        sae = build_sae(SaeConfig(architecture=arch, d_in=8, expansion=4, k=2), seed=0)
        config = TrainerConfig(steps=40, lr=3e-3, lr_warmup_steps=5, log_every=7, dead_window_tokens=3 * 16)
        return Trainer(sae, config)

    data = [torch.randn(16, 8, generator=torch.Generator().manual_seed(i)) for i in range(40)]
    straight = make()
    logs_a: list[dict] = []
    straight.fit(iter(data), on_log=logs_a.append, progress=False)

    first = make()
    logs_b: list[dict] = []
    for batch in data[:17]:
        first.train_step(batch)
    state = first.state_dict()
    second = make()
    second.load_state_dict(state)
    second.fit(iter(data[17:]), on_log=logs_b.append, progress=False)
    for name, value in straight.sae.state_dict().items():
        assert torch.equal(value, second.sae.state_dict()[name]), name
    keys = ("loss", "mse", "fvu", "l0", "dead_fraction_train_window", "mean_log10_density")
    assert [{k: r[k] for k in keys} for r in logs_a[-3:]] == [{k: r[k] for k in keys} for r in logs_b[-3:]]


@pytest.mark.slow
def test_defaults_do_not_diverge_at_ten_times_the_steps():
    """The default lr, schedule, decoder norm and dead window: a 10x longer run ends no worse."""
    d_in, n_atoms, k = 32, 64, 4
    dictionary = sparse_dictionary(n_atoms, d_in, seed=2)
    held = [b * 3 for b, _ in zip(_batches(dictionary, k, 512, seed=7), range(2), strict=False)]
    fvu = {}
    for steps in (150, 1500):
        sae = build_sae(SaeConfig(architecture="topk", d_in=d_in, d_sae=2 * n_atoms, k=k), seed=0)
        trainer = Trainer(sae, TrainerConfig(steps=steps, lr_warmup_steps=15, log_every=steps))
        trainer.fit((b * 3 for b in _batches(dictionary, k, 128)), progress=False)
        assert all(torch.isfinite(p).all() for p in sae.parameters())
        fvu[steps] = trainer.evaluate(held).metrics["fvu"]
    assert fvu[1500] < 0.8 * fvu[150], fvu  # still improving, not diverging


def test_the_decoder_bias_starts_at_the_first_batch_mean() -> None:
    batch = torch.randn(64, 8) + torch.arange(8.0)
    sae = build_sae(SaeConfig(architecture="topk", d_in=8, expansion=2, k=2), seed=0)
    Trainer(sae, TrainerConfig(steps=10, lr=1e-9, lr_warmup_steps=0)).train_step(batch)
    torch.testing.assert_close(sae.b_dec.detach(), batch.mean(dim=0), atol=1e-6, rtol=0)
    zeros = build_sae(SaeConfig(architecture="topk", d_in=8, expansion=2, k=2), seed=0)
    Trainer(zeros, TrainerConfig(steps=10, lr=1e-9, lr_warmup_steps=0, b_dec_init="zeros")).train_step(batch)
    assert zeros.b_dec.abs().max() < 1e-6


def test_started_at_the_mean_constant_channels_leave_no_latent_dead() -> None:
    """Residual streams carry a few large constant channels; from a zero decoder bias the encoder's
    pre-activations are dominated by them and most latents never fire."""
    d_in, n_atoms, k = 32, 48, 3
    dictionary = sparse_dictionary(n_atoms, d_in, seed=4)
    offset = torch.zeros(d_in)
    offset[:4] = 40.0

    def run(b_dec_init: str) -> dict:
        sae = build_sae(SaeConfig(architecture="topk", d_in=d_in, d_sae=2 * n_atoms, k=k), seed=0)
        config = TrainerConfig(steps=300, lr=4e-3, lr_warmup_steps=30, dead_window_tokens=10_000,
                               b_dec_init=b_dec_init)  # fmt: skip
        trainer = Trainer(sae, config)
        trainer.fit((b + offset for b in _batches(dictionary, k, 128)), progress=False)
        held = (b + offset for b, _ in zip(_batches(dictionary, k, 512, seed=9), range(4), strict=False))
        return trainer.evaluate(held).metrics

    mean, zeros = run("mean"), run("zeros")
    assert mean["dead_fraction_train_window"] < 0.2 < zeros["dead_fraction_train_window"], (mean, zeros)
    assert mean["fvu"] < 0.5 * zeros["fvu"], (mean, zeros)
