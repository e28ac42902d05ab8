"""benchmarks/bench_train_family.py, small: its data have the stated shape, and its judge tells an SAE
that found the dictionary from one that reconstructs well without finding it."""

from __future__ import annotations

import pytest
import torch

from benchmarks.bench_train_family import Data, Member, configs, recovery, train_member


def test_members_have_the_stated_frequencies_channels_and_precision():
    shaped = Data(Member(32, "uniform", 8, channels=True, bf16=True))
    x = torch.cat([shaped.batch(4096) for _ in range(4)]) / shaped.scale
    rounded = torch.allclose(x, x.bfloat16().float(), rtol=1e-6, atol=0)  # up to the scaling's rounding
    assert rounded  # bf16-rounded before the provider's scaling
    channels, rest = x[:, :4], x[:, 4:]
    assert channels.mean(dim=0).sub(40).abs().max() < 0.3 and channels.std(dim=0).max() < 1.2
    assert rest.mean(dim=0).abs().max() < 0.5 and rest.abs().max() < 10
    assert torch.allclose(shaped.freq, torch.full((128,), 8 / 128))
    power = Data(Member(32, "power", 8, channels=False, bf16=False))
    assert power.freq.sum().item() == pytest.approx(8, rel=0.01) and power.freq.max() <= 0.5  # clamped
    law = (128 / torch.arange(2, 129, dtype=torch.float32)) ** 0.6  # rank^-0.6 below the clamp
    assert torch.allclose(power.freq[1:] / power.freq[-1], law, rtol=1e-4)
    y = power.batch(4096)
    assert y.norm(dim=1).mean().item() == pytest.approx(32**0.5, rel=0.05)
    assert not torch.allclose(y, y.bfloat16().float(), rtol=1e-4, atol=0)  # float32 stays float32
    assert (
        recovery(power.atoms, power.atoms).min() > 0.9999 and recovery(-power.atoms, power.atoms).max() < 0.75
    )


@pytest.mark.slow
def test_the_judge_tells_a_found_dictionary_from_a_good_reconstruction():
    """Power-law L4 in 32 dims, one pass of 300 steps: k 8 finds the atoms; k 32 (= d_in) reconstructs
    almost perfectly with latents that are not atoms (about 20 s)."""
    m = Member(32, "power", 4, channels=False, bf16=False)
    found = train_member(m, configs(m, "cpu", ["k=8,32", "lr=3e-3"], steps=300), device="cpu")
    assert found is not None
    sparse, dense = found
    assert (sparse["run"], dense["run"]) == ("k=8,lr=3e-3", "k=32,lr=3e-3")
    assert sparse["ok"] and sparse["recovery"] > 0.93 and sparse["fvu"] < 0.2 and sparse["dead"] == 0
    assert not dense["ok"] and dense["fvu"] < 0.01 and dense["recovery"] < 0.6 and dense["recovered"] == 0
