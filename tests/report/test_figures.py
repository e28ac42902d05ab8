"""Every report figure, rendered as its PNG, on the synthetic 3-layer store and on a 34-layer one:
no overlapping tick labels, integer layer axes, no NaN text; no NaN in the tables either."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sae_store.report import load_inputs
from sae_store.report.assemble import report_sections
from sae_store.report.section import Section, Table, markdown_table
from sae_store.store import ActivationStore

from .figcheck import figure_problems
from .synthetic import make_store, write_results


def _check(sections: list[Section]) -> list[str]:
    problems = []
    for section in sections:
        for fig in section.figures:
            if fig.static is not None:
                problems += [f"{fig.name}: {p}" for p in figure_problems(fig.static)]
        for item in section.items:
            if isinstance(item, Table):
                text = markdown_table(item.frame)
                if re.search(r"\bnan\b", text, re.IGNORECASE):
                    problems.append(f"table {item.caption[:40]!r} in {section.key} shows NaN")
    return problems


def test_every_figure_of_the_full_report_reads_cleanly(full_store: ActivationStore) -> None:
    sections = report_sections(load_inputs(full_store.path))
    assert sum(len(s.figures) for s in sections) >= 10
    assert _check(sections) == []


@pytest.fixture(scope="module")
def store_34(tmp_path_factory: pytest.TempPathFactory) -> ActivationStore:
    root = tmp_path_factory.mktemp("34")
    store = make_store(root / "store.zarr", n_layers=34)
    # interventions on every third layer still span the 34-layer axis; two probe folds suffice here
    write_results(store, root / "results", saes_dir=root / "saes", intervention_layers=list(range(0, 34, 3)),
                  probe_folds=2)  # fmt: skip
    return store


@pytest.mark.slow
def test_every_figure_of_a_34_layer_report_reads_cleanly(store_34: ActivationStore, tmp_path: Path) -> None:
    assert _check(report_sections(load_inputs(store_34.path))) == []


def test_the_random_control_point_of_a_single_layer_sits_by_its_layer_tick() -> None:
    import pandas as pd

    from sae_store.report.intervention_sections import _effects_figure

    frame = pd.DataFrame(
        {
            "experiment": ["male_biased_ablation"],
            "layer": [2],
            "differential": [0.001],
            "CI low": [-0.001],
            "CI high": [0.002],
            "random": [0.0],
            "random low": [-0.007],
            "random high": [0.002],
        }
    )
    assert figure_problems(_effects_figure(frame).static) == []


def test_no_legend_covers_an_error_bar_of_the_intervention_effects() -> None:
    import pandas as pd

    from sae_store.report.intervention_sections import _effects_figure

    # the demo's values: a wide random-control interval reaching into the upper right corner
    frame = pd.DataFrame(
        {
            "experiment": ["male_biased_ablation", "male_biased_amplification", "male_biased_neutralisation"],
            "layer": [2, 2, 2],
            "differential": [0.0006, -0.0002, 0.0004],
            "CI low": [-0.0003, -0.0013, -0.0003],
            "CI high": [0.0013, 0.0008, 0.0011],
            "random": [-0.0003, 0.0003, -0.0001],
            "random low": [-0.0075, -0.0019, -0.0075],
            "random high": [0.0017, 0.0042, 0.0024],
        }
    )
    assert figure_problems(_effects_figure(frame).static) == []


def test_a_label_longer_than_its_panel_is_found() -> None:
    import holoviews as hv

    import sae_store.report.plotting  # noqa: F401  (the matplotlib backend)

    label = hv.Dimension("y", label="a label far too long for the small panel it labels")
    panels = [
        hv.Curve([(0, 0), (1, 1)], "x", label).opts(title=title, fig_size=40, aspect=3, backend="matplotlib")
        for title in ("top", "bottom")
    ]
    problems = figure_problems(hv.Layout(panels).cols(1).opts(sublabel_format="", backend="matplotlib"))
    assert (
        "the y label 'a label far too long for the small panel it labels' of panel 'bottom' runs into "
        "panel 'top'" in problems
    ), problems
