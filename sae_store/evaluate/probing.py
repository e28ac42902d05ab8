"""Sparse probing of gender and language from an SAE's latents, beside probes on the raw activations.

Inputs are per-sample means over the sample's image tokens or over its text tokens (per language).
Probes: SAEBench's sparse probing (the k latents whose class means differ most, chosen on each
training fold, then an L2 logistic regression; k from ``EvaluateConfig.probe_k``) and a probe on every
latent, with the same probes on the raw stored vectors of the layer; cross-validated out-of-fold
accuracy with a Wilson 95 % interval (:func:`~sae_store.analyze.probe.gender_probe`).

Tasks: ``gender/<language>/<role>`` (male vs female samples; ambiguous and unknown ones left out) and
``language/<role>`` (the first two languages; one image's rows stay in one fold). A task with fewer
samples of a class than folds is not run (NaN, with the reason in the record).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from sae_store.analyze.probe import ProbeResult, gender_probe
from sae_store.evaluate.stored import POOLED_ROLES

#: The statistics kept per probe (fields of :class:`~sae_store.analyze.probe.ProbeResult`).
PROBE_STATS = ("accuracy", "ci_low", "ci_high", "balanced_accuracy", "chance_accuracy", "n_samples")


def probe_names(languages: Sequence[str]) -> list[str]:
    """The probing tasks of a store with ``languages``."""
    names = [f"gender/{lang}/{role}" for role in POOLED_ROLES for lang in languages]
    return names + ([f"language/{role}" for role in POOLED_ROLES] if len(languages) > 1 else [])


def probe_inputs(probe_k: Sequence[int]) -> list[str]:
    """The inputs each task is probed from: SAE latents and raw vectors, top k and all."""
    return [f"{kind}_{k}" for kind in ("sae_top", "raw_top") for k in probe_k] + ["sae_all", "raw_all"]


def _task(
    name: str, means: np.ndarray, genders: np.ndarray, languages: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Rows, labels and groups of task ``name`` from per-sample means [samples, languages, roles, d]."""
    parts = name.split("/")
    role = POOLED_ROLES.index(parts[-1])
    if parts[0] == "gender":
        g = list(languages).index(parts[1])
        keep = np.isin(genders, ["male", "female"]) & np.isfinite(means[:, g, role]).all(axis=1)
        return means[keep, g, role], genders[keep] == "male", None
    rows = [means[:, g, role] for g in (0, 1)]
    keep = np.isfinite(rows[0]).all(axis=1) & np.isfinite(rows[1]).all(axis=1)
    x = np.concatenate([rows[0][keep], rows[1][keep]])
    y = np.r_[np.ones(int(keep.sum()), bool), np.zeros(int(keep.sum()), bool)]
    groups = np.tile(np.flatnonzero(keep), 2)
    return x, y, groups


def run_probes(
    means: np.ndarray,
    kind: str,
    genders: np.ndarray,
    languages: Sequence[str],
    *,
    probe_k: Sequence[int],
    folds: int,
    C: float,
    seed: int,
) -> tuple[dict[tuple[str, str], ProbeResult], dict[str, str]]:
    """Probes of every task from ``means`` ([samples, languages, roles, d]; ``kind`` ``sae`` or
    ``raw`` names the inputs): results by (task, input), and why a task did not run."""
    results: dict[tuple[str, str], ProbeResult] = {}
    skipped: dict[str, str] = {}
    with threadpool_limits(1):  # small fits: more BLAS threads only wait on each other (13x slower, 2 cores)
        for name in probe_names(languages):
            x, y, groups = _task(name, means, genders, languages)
            fewest = min(int(y.sum()), int((~y).sum()))
            if fewest < folds:
                skipped[name] = f"{fewest} samples of its smaller class, fewer than the {folds} folds"
                continue
            for k in [*probe_k, None]:
                if k is None or k <= x.shape[1]:
                    label = f"{kind}_all" if k is None else f"{kind}_top_{k}"
                    results[(name, label)] = gender_probe(
                        x, y, folds=folds, C=C, seed=seed, top_k=k, groups=groups
                    )
    return results, skipped


def probe_array(
    results: dict[tuple[str, str], ProbeResult], tasks: list[str], inputs: list[str]
) -> np.ndarray:
    """[task, input, stat] values of ``results`` (NaN where a probe did not run)."""
    out = np.full((len(tasks), len(inputs), len(PROBE_STATS)), np.nan)
    for (task, label), r in results.items():
        d: dict[str, Any] = r.to_dict()
        out[tasks.index(task), inputs.index(label)] = [float(d[s]) for s in PROBE_STATS]
    return out
