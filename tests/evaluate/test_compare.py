"""The best SAE set per layer: by the chosen metric, by explained variance where that was not measured,
ties named."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sae_store.evaluate.compare import best_per_layer


def _table() -> pd.DataFrame:
    nan = math.nan
    return pd.DataFrame(
        [
            {"layer": 1, "set": "a", "ce_loss_score:image": 0.90, "explained_variance": 0.70},
            {"layer": 1, "set": "b", "ce_loss_score:image": 0.95, "explained_variance": 0.60},
            {"layer": 2, "set": "a", "ce_loss_score:image": nan, "explained_variance": 0.80},
            {"layer": 2, "set": "b", "ce_loss_score:image": 0.99, "explained_variance": 0.75},
            {"layer": 3, "set": "a", "ce_loss_score:image": 0.50, "explained_variance": 0.40},
            {"layer": 3, "set": "b", "ce_loss_score:image": 0.50, "explained_variance": 0.40},
            {"layer": 4, "set": "b", "ce_loss_score:image": 0.10, "explained_variance": 0.20},
        ]
    )


def test_best_per_layer() -> None:
    best = best_per_layer(_table(), "ce_loss_score:image").set_index("layer")
    assert best.loc[1, ["best", "by", "runner-up", "tie"]].tolist() == [
        "b",
        "ce_loss_score:image",
        "a",
        False,
    ]
    assert best.loc[1, "margin"] == pytest.approx(0.05)
    # one set lacks the CE score: both are compared by explained variance
    assert best.loc[2, ["best", "by", "runner-up"]].tolist() == ["a", "explained_variance", "b"]
    assert best.loc[2, "margin"] == pytest.approx(0.05)
    assert best.loc[3, ["best", "tie"]].tolist() == ["a", True] and best.loc[3, "margin"] == 0
    assert best.loc[4, "runner-up"] == "" and best.loc[4, "sets"] == 1 and not best.loc[4, "tie"]


def test_a_metric_no_set_has_falls_back_to_explained_variance() -> None:
    best = best_per_layer(_table(), "kl_div_score:all")
    assert set(best["by"]) == {"explained_variance"}
