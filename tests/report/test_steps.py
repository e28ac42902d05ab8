"""The completeness table: what is missing per layer and language, and the commands that fill it."""

from __future__ import annotations

import numpy as np

from sae_store.report.steps import describe_completion
from sae_store.selection import format_ranges
from sae_store.store import Completion


def _completion(done: np.ndarray) -> Completion:
    return Completion(
        layers=(0, 1, 2, 3), languages=("en", "ar"), blocks=[(0, 8), (8, 16), (16, 20)], done=done
    )


def test_ranges_are_compact():
    assert format_ranges([0, 1, 2, 5, 7, 8], ", ") == "0-2, 5, 7-8"
    assert format_ranges([], ", ") == ""


def test_complete_and_empty_grids():
    assert describe_completion(_completion(np.ones((4, 2, 3)))) == (
        "done",
        "all 4 layers x 2 languages complete",
    )
    assert describe_completion(_completion(np.zeros((4, 2, 3)))) == ("not run", "nothing written yet")


def test_partial_grid_groups_layers_by_missing_ranges():
    done = np.ones((4, 2, 3))
    done[:, 1, 1:] = 0  # ar: samples 8:20 missing on every layer
    done[3, 0, 0] = 0.5  # en layer 3: first block partly written
    state, detail = describe_completion(_completion(done))
    assert state == "partial"
    # fraction = (4*2*20 - 4*12 - 4) / (4*2*20)
    assert detail == "67.5% written; en layers 3: samples 0:8; ar layers 0-3: samples 8:20"
