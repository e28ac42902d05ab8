"""Which pipeline steps have run, what is missing, and the commands that would fill the gaps.

Replaces the original pipeline's status table: instead of "done / not done" per script, each step
says which layers, languages and sample blocks are missing and prints the command to run. The
steps resume (they skip blocks whose completion flags are set), so a command never needs a list
of ranges: rerunning it fills exactly what is missing.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from sae_store.analyze.registry import ANALYSES
from sae_store.report.inputs import BIAS_JSON, ReportInputs
from sae_store.selection import format_ranges
from sae_store.store import Completion

State = Literal["done", "partial", "not run"]


@dataclass
class StepStatus:
    """One pipeline step as the report sees it."""

    step: str
    state: State
    detail: str
    """What is there and what is missing, for people."""
    commands: list[str] = field(default_factory=list)
    """Commands that would fill what is missing (empty when done)."""


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
        parts += [
            f"{lang} layers {format_ranges(layers, ', ')}: samples {spans}"
            for spans, layers in by_ranges.items()
        ]
    return "partial", "; ".join(parts)


@dataclass(frozen=True)
class Commands:
    """The commands that produce each input of the report, for this store and its folders."""

    store: str
    saes: str
    results: str
    model: str = "MODEL_DIR"

    @classmethod
    def for_inputs(cls, inputs: ReportInputs) -> Commands:
        parent = inputs.store.path.parent
        return cls(
            store=shlex.quote(str(inputs.store.path)),
            saes=shlex.quote(str(inputs.saes_dir or parent / "saes")),
            results=shlex.quote(str(inputs.results_dir or parent / "results")),
        )

    def extract(self) -> str:
        return f"sae-store extract {self.store} --model {self.model}"

    def train(self, layer: int | str = "L") -> str:
        return f"sae-store train {self.store} --layer {layer} --out {self.saes}"

    def encode(self) -> str:
        return f"sae-store encode {self.store} --saes {self.saes}"

    def analyze(self, name: str) -> str:
        saes = f" --saes {self.saes}" if name in ANALYSES and ANALYSES[name].saes == "required" else ""
        return f"sae-store analyze {name} {self.store}{saes} --results {self.results}"

    def evaluate(self) -> str:
        return f"sae-store evaluate {self.store} --saes {self.saes}"

    def caption(self) -> str:
        return f"sae-store caption {self.store}"

    def intervene(self, mode: str, layer: int | str = "L") -> str:
        return (
            f"sae-store intervene {self.store} --saes {self.saes} --layer {layer} --mode {mode} "
            f"--features top-male:20 --results {self.results}"
        )


def _done_or(ran: bool, step: str, detail: tuple[str, str], commands: list[str]) -> StepStatus:
    return StepStatus(
        step, "done" if ran else "not run", detail[0] if ran else detail[1], [] if ran else commands
    )


def pipeline_steps(inputs: ReportInputs) -> list[StepStatus]:
    """The status of every step, from extraction to interventions, with commands for the gaps."""
    cmd = Commands.for_inputs(inputs)
    steps: list[StepStatus] = []

    state, detail = describe_completion(inputs.extraction)
    steps.append(StepStatus("extract", state, detail, [] if state == "done" else [cmd.extract()]))

    missing = [layer for layer in inputs.layout.layers if layer not in inputs.saes]
    if inputs.saes_dir is None and not inputs.saes:
        train = StepStatus("train", "not run", "no SAE folder (--saes, or saes/ beside the store)")
    elif missing:
        train = StepStatus(
            "train",
            "partial" if inputs.saes else "not run",
            f"layers {format_ranges(missing, ', ')} have no SAE in {cmd.saes}",
        )
    else:
        train = StepStatus("train", "done", f"an SAE for each of the {len(inputs.layout.layers)} layers")
    if train.state != "done":
        train.commands = [cmd.train(layer) for layer in missing[:3]]
        if len(missing) > 3:
            train.commands.append(f"# ... one per layer ({len(missing)} in all; an sbatch array over layers)")
    steps.append(train)

    if inputs.features is None:
        steps.append(StepStatus("encode", "not run", "no features group", [cmd.encode()]))
    else:
        state, detail = describe_completion(inputs.features)
        steps.append(StepStatus("encode", state, detail, [] if state == "done" else [cmd.encode()]))

    for name in ANALYSES.names():
        ran = name in inputs.analysis_groups
        absent = inputs.stale.get(name, "no results")
        steps.append(_done_or(ran, f"analyze {name}", ("results present", absent), [cmd.analyze(name)]))
    steps.append(
        _done_or(
            inputs.has_generation,
            "caption",
            ("generated captions stored", "no generation group"),
            [cmd.caption()],
        )
    )
    ran = bool(inputs.interventions())  # stale experiments (features encoded again since) left out
    # interventions edit the model's own captions: `caption` has to run first
    first = [] if inputs.has_generation else [cmd.caption()]
    layer = intervention_layer(inputs)
    steps.append(
        _done_or(
            ran,
            "intervene",
            ("experiments stored", "no experiments"),
            [*first, cmd.intervene("ablate", layer)],
        )
    )
    return steps


def intervention_layer(inputs: ReportInputs) -> int | str:
    """The layer with an SAE and the most male-biased significant features, for a runnable command."""
    with_sae = [layer for layer in inputs.layout.layers if layer in inputs.saes]
    if not with_sae:
        return "L"
    by_layer = inputs.results.get(BIAS_JSON, {}).get("layers", {})
    return max(with_sae, key=lambda layer: by_layer.get(str(layer), {}).get("n_male_biased_significant", 0))
