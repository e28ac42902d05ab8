"""Scoring an explanation on held-out examples by detection and fuzzing, as delphi defines them.

- **detection**: the scorer reads the explanation and unmarked examples, firing and not firing, and
  gives each the probability that the feature is active in it;
- **fuzzing**: the scorer reads firing examples whose most active tokens are marked, and the same
  examples with as many *other* tokens marked, and gives each the probability that the marks are
  what the explanation describes.

Each gives a balanced accuracy (predictions at probability >= 0.5; 0.5 is chance) and the ROC AUC of
the probabilities, over the examples whose batch got a usable reply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sklearn.metrics import roc_auc_score

from sae_store.autointerp.examples import Example
from sae_store.autointerp.explainers import Explainer, Prompt, ask_all
from sae_store.autointerp.prompts import ReplyError, detection_prompt, fuzzing_prompt, parse_probabilities
from sae_store.roles import TokenRole

Method = Literal["detection", "fuzzing"]
METHODS: tuple[Method, ...] = ("detection", "fuzzing")


@dataclass(frozen=True)
class Item:
    """One example as the scorer sees it, and the truth."""

    example: Example
    text: str
    activating: bool


@dataclass
class Score:
    balanced_accuracy: float = math.nan
    auc: float = math.nan
    records: list[dict[str, Any]] = field(default_factory=list)
    """delphi's per-example records (str_tokens, activations, distance, activating, prediction, ...)."""
    problem: str = ""


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean of the true-positive and true-negative rates (NaN without both classes)."""
    if truth.all() or not truth.any():
        return math.nan
    return float((predicted[truth].mean() + (~predicted[~truth]).mean()) / 2)


def items(
    method: Method, firing: Sequence[Example], silent: Sequence[Example], rng: np.random.Generator
) -> list[Item]:
    """The examples a method shows, in a random order."""
    if method == "detection":
        out = [Item(e, e.render(), True) for e in firing] + [Item(e, e.render(), False) for e in silent]
    else:
        out = []
        for e in firing:
            right = e.top_positions()
            others = np.flatnonzero((e.activations <= 0) & (e.roles != TokenRole.PAD))
            wrong = sorted(int(t) for t in rng.permutation(others)[: len(right)])
            out += [Item(e, e.render(right), True), Item(e, e.render(wrong), False)]
    return [out[i] for i in rng.permutation(len(out))]


def batches_of(
    explanation: str, shown: list[Item], method: Method, batch: int
) -> list[tuple[list[Item], Prompt]]:
    """The scoring prompts of one explanation: ``batch`` examples each."""
    make = detection_prompt if method == "detection" else fuzzing_prompt
    parts = [shown[i : i + batch] for i in range(0, len(shown), batch)]
    return [(b, Prompt(make(explanation, [x.text for x in b]))) for b in parts]


def evaluate(batches: list[list[Item]], replies: Sequence[str | ReplyError]) -> Score:
    """How well the scorer's answers to ``batches`` match the truth."""
    truth, probs, records, problems = [], [], [], []
    for b, reply in zip(batches, replies, strict=True):
        try:
            if isinstance(reply, ReplyError):
                raise reply
            p = parse_probabilities(reply, len(b))
        except ReplyError as e:
            problems.append(str(e))
            continue
        for item, prob in zip(b, p, strict=True):
            truth.append(item.activating)
            probs.append(prob)
            records.append(
                {
                    "str_tokens": item.example.tokens,
                    "activations": item.example.activations.tolist(),
                    "distance": -1 if item.example.kind == "none" else 0,
                    "activating": item.activating,
                    "prediction": prob >= 0.5,
                    "probability": prob,
                    "correct": (prob >= 0.5) == item.activating,
                }
            )
    if not truth:
        return Score(problem=problems[0] if problems else "no held-out examples")
    t, p_ = np.array(truth), np.array(probs)
    auc = float(roc_auc_score(t, p_)) if 0 < t.sum() < len(t) else math.nan
    return Score(balanced_accuracy(t, p_ >= 0.5), auc, records, "; ".join(problems[:1]))


def score(
    explainer: Explainer, explanation: str, shown: list[Item], method: Method, *, batch: int, concurrency: int
) -> Score:
    """Ask the scorer about ``shown`` in batches and measure how well its answers match the truth."""
    planned = batches_of(explanation, shown, method, batch)
    return evaluate([b for b, _ in planned], ask_all(explainer, [p for _, p in planned], concurrency))
