"""Which pipeline steps have run, what is missing, and the commands that would fill the gaps.

Replaces the original pipeline's status table: instead of "done / not done" per script, each step
says which layers, languages and sample blocks are missing and prints the command to run. The
steps resume (they skip blocks whose completion flags are set), so a command never needs a list
of ranges: rerunning it fills exactly what is missing.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from sae_store.report.inputs import ReportInputs
from sae_store.store import Completion

State = Literal["done", "partial", "not run"]

#: Analyses of ``sae-store analyze`` in the order they build on each other.
ANALYSES = ("bias", "crosslingual", "crosslayer", "interpret", "visual", "qualitative")


@dataclass
class StepStatus:
    """One pipeline step as the report sees it."""

    step: str
    state: State
    detail: str
    """What is there and what is missing, for people."""
    commands: list[str] = field(default_factory=list)
    """Commands that would fill what is missing (empty when done)."""


def _ranges(values: Sequence[int]) -> str:
    """Compact text of sorted integers: ``0-3, 7, 9-10``."""
    out: list[str] = []
    vals = sorted(values)
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        out.append(str(vals[i]) if i == j else f"{vals[i]}-{vals[j]}")
        i = j + 1
    return ", ".join(out)


def _sample_ranges(comp: Completion, mask: np.ndarray) -> str:
    """Merged sample ranges ``a:b`` of the blocks selected by ``mask`` (one bool per block)."""
    spans: list[list[int]] = []
    for (start, stop), todo in zip(comp.blocks, mask, strict=True):
        if not todo:
            continue
        if spans and spans[-1][1] == start:
            spans[-1][1] = stop
        else:
            spans.append([start, stop])
    return ", ".join(f"{a}:{b}" for a, b in spans)


def describe_completion(comp: Completion) -> tuple[State, str]:
    """State of a flag grid and, per language, the layers and sample ranges still missing."""
    if comp.is_complete:
        return "done", f"all {len(comp.layers)} layers x {len(comp.languages)} languages complete"
    if not comp.done.any():
        return "not run", "nothing written yet"
    parts = [f"{comp.fraction:.1%} written"]
    for j, lang in enumerate(comp.languages):
        # layers with the same missing sample ranges are listed together
        by_ranges: dict[str, list[int]] = {}
        for i, layer in enumerate(comp.layers):
            todo = comp.done[i, j] < 1
            if todo.any():
                by_ranges.setdefault(_sample_ranges(comp, todo), []).append(layer)
        parts += [f"{lang} layers {_ranges(layers)}: samples {spans}" for spans, layers in by_ranges.items()]
    return "partial", "; ".join(parts)


def pipeline_steps(inputs: ReportInputs, *, model: str = "MODEL_DIR") -> list[StepStatus]:
    """The status of every step, from extraction to interventions, with commands for the gaps."""
    store = shlex.quote(str(inputs.store.path))
    saes = shlex.quote(str(inputs.saes_dir)) if inputs.saes_dir is not None else "saes/"
    steps: list[StepStatus] = []

    state, detail = describe_completion(inputs.extraction)
    steps.append(
        StepStatus(
            "extract",
            state,
            detail,
            [] if state == "done" else [f"sae-store extract {store} --model {model}"],
        )
    )

    missing = [layer for layer in inputs.layers if layer not in inputs.saes]
    if inputs.saes_dir is None and not inputs.saes:
        train = StepStatus("train", "not run", "no SAE folder given (--saes)")
    elif missing:
        state = "partial" if inputs.saes else "not run"
        train = StepStatus("train", state, f"layers {_ranges(missing)} have no SAE in {saes}")
    else:
        train = StepStatus("train", "done", f"an SAE for each of the {len(inputs.layers)} layers")
    if train.state != "done":
        train.commands = [f"sae-store train {store} --layer {layer} --out {saes}" for layer in missing[:3]]
        if len(missing) > 3:
            train.commands.append(f"# ... one per layer ({len(missing)} in all; an sbatch array over layers)")
    steps.append(train)

    if inputs.features is None:
        steps.append(
            StepStatus("encode", "not run", "no features group", [f"sae-store encode {store} --saes {saes}"])
        )
    else:
        state, detail = describe_completion(inputs.features)
        cmds = [] if state == "done" else [f"sae-store encode {store} --saes {saes}"]
        steps.append(StepStatus("encode", state, detail, cmds))

    for name in ANALYSES:
        ran = name in inputs.analysis_groups or name in inputs.results
        steps.append(
            StepStatus(
                f"analyze {name}",
                "done" if ran else "not run",
                "results present" if ran else "no results",
                [] if ran else [f"sae-store analyze {name} {store}"],
            )
        )

    steps.append(
        StepStatus(
            "caption",
            "done" if inputs.has_generation else "not run",
            "generated captions stored" if inputs.has_generation else "no generation group",
            [] if inputs.has_generation else [f"sae-store caption {store} --model {model}"],
        )
    )
    return steps
