"""Sparse probes on planted data: the latent carrying the label is found, shuffled labels stay at chance."""

from __future__ import annotations

import numpy as np

from sae_store.analyze.probe import gender_probe, top_k_by_mean_difference
from sae_store.evaluate.probing import probe_inputs, probe_names, run_probes


def _planted(n: int = 200, d: int = 300, column: int = 137, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.r_[np.ones(n // 2, bool), np.zeros(n - n // 2, bool)])
    x = np.abs(rng.normal(size=(n, d))) * (rng.random((n, d)) < 0.1)  # sparse non-negative latents
    x[:, column] = np.where(y, 2.0, 0.0) + 0.1 * rng.random(n)  # this latent carries the label
    return x, y


def test_the_top_latent_carries_a_planted_label() -> None:
    x, y = _planted()
    assert top_k_by_mean_difference(x, y, 1).tolist() == [137]
    result = gender_probe(x, y, folds=5, C=1.0, seed=0, top_k=1)
    assert result.accuracy >= 0.95 and result.n_features == 1


def test_shuffled_labels_stay_within_chance() -> None:
    x, y = _planted()
    shuffled = np.random.default_rng(1).permutation(y)
    result = gender_probe(x, shuffled, folds=5, C=1.0, seed=0, top_k=1)
    assert result.ci_low <= 0.5 <= result.ci_high


def test_tasks_and_inputs_of_a_two_language_store() -> None:
    gender = ["gender/en/image", "gender/ar/image", "gender/en/text", "gender/ar/text"]
    assert probe_names(["en", "ar"]) == [*gender, "language/image", "language/text"]
    assert probe_inputs([1, 5]) == ["sae_top_1", "sae_top_5", "raw_top_1", "raw_top_5", "sae_all", "raw_all"]


def test_run_probes_pools_languages_and_names_the_tasks_it_cannot_run() -> None:
    x, y = _planted(n=40, d=30, column=7)
    means = np.stack([x, x + 3.0 * (np.arange(30) == 5)], axis=1)[:, :, None, :].repeat(2, axis=2)
    genders = np.where(y, "male", "female").astype(object)
    genders[:18] = "unknown"  # 22 labelled samples left
    results, skipped = run_probes(means, "sae", genders, ["en", "ar"], probe_k=(1,), folds=5, C=1.0, seed=0)
    assert results[("gender/en/image", "sae_top_1")].n_samples == 22
    assert results[("language/image", "sae_top_1")].accuracy >= 0.95  # dimension 5 tells the languages apart
    assert skipped == {}
    _, skipped = run_probes(means, "sae", genders, ["en", "ar"], probe_k=(1,), folds=15, C=1.0, seed=0)
    fewest = min((genders == "male").sum(), (genders == "female").sum())
    assert skipped["gender/en/text"] == f"{fewest} samples of its smaller class, fewer than the 15 folds"
