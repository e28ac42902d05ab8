"""From loaded inputs to sections: which results each section needs, and what to run when they are missing."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import xarray as xr

from sae_store.analyze.registry import ANALYSES
from sae_store.progress import progress_bar
from sae_store.report.analysis_sections import analysis_section
from sae_store.report.bias_sections import bias_layers_section, volcano_section
from sae_store.report.crosslingual_sections import crosslingual_section
from sae_store.report.evaluation_sections import evaluation_section
from sae_store.report.explain_sections import explanations_section, order_by_effect
from sae_store.report.features_sections import (
    MAX_DASHBOARDS,
    THUMBNAIL,
    dashboards,
    features_section,
    qualitative_section,
)
from sae_store.report.inputs import BIAS_JSON, ReportInputs
from sae_store.report.intervention_sections import interventions_section, splice_quality
from sae_store.report.quality_sections import quality_section
from sae_store.report.section import Section, not_run_section
from sae_store.report.steps import Commands, intervention_layer, pipeline_steps
from sae_store.report.store_sections import completeness_section, usage_section
from sae_store.store import schema as S
from sae_store.store.results import has_group, read_group, read_labels, strings


def _quality(inputs: ReportInputs, cmd: Commands) -> Section:
    if not inputs.saes:
        where = (
            f" in {inputs.saes_dir}"
            if inputs.saes_dir
            else " (no --saes folder, and no saes/ beside the store)"
        )
        return not_run_section(
            "sae_quality",
            "SAE quality per layer",
            f"Needs trained SAEs{where}.",
            [cmd.train()],
        )
    return quality_section(inputs.saes, splice_quality(inputs.interventions()))


def _evaluation(inputs: ReportInputs, cmd: Commands) -> Section:
    evaluations = inputs.evaluations()
    if not evaluations:
        what = "Needs `sae-store evaluate` (the SAE sets compared on the store's held-out samples)."
        return not_run_section("evaluation", "Which SAE to trust", what, [cmd.evaluate()])
    return evaluation_section(evaluations)


def _bias_layers(inputs: ReportInputs, cmd: Commands) -> Section:
    bias = inputs.result(BIAS_JSON)
    if bias is None:
        where = (
            f" in {inputs.results_dir}"
            if inputs.results_dir
            else " (no --results folder, and no results/ beside the store)"
        )
        return not_run_section(
            "bias_layers",
            "Bias across layers",
            f"Needs the bias results (`{BIAS_JSON}`{where}).",
            [cmd.analyze("bias"), cmd.analyze("crosslayer")],
        )
    return bias_layers_section(bias, inputs.analysis("crosslayer"))


def _from_group(
    inputs: ReportInputs,
    cmd: Commands,
    build: Callable[[xr.Dataset], Section],
    group: str,
    key: str,
    title: str,
    what: str = "",
) -> Section:
    """The section ``build`` makes of the store's ``analysis/<group>``, or one saying what to run."""
    ds = inputs.analysis(group)
    if ds is None:
        need = f"Needs the store's `analysis/{group}` group{what}."
        return not_run_section(key, title, need, [cmd.analyze(group)])
    return build(ds)


def _crosslingual(inputs: ReportInputs, cmd: Commands) -> Section:
    languages = list(inputs.layout.languages)
    return _from_group(
        inputs,
        cmd,
        partial(crosslingual_section, bias=inputs.analysis("bias")),
        group="crosslingual",
        key="crosslingual",
        title="Cross-lingual comparison",
        what=f" and a second language (the store holds {languages})" if len(languages) < 2 else "",
    )


def _strongest(interpret: xr.Dataset, bias: xr.Dataset | None, n: int) -> np.ndarray:
    """Entries of the inspected features with the largest |d| (in stored order without bias results)."""
    return np.sort(order_by_effect(interpret, bias, "entry_language")[:n])


def _features(inputs: ReportInputs, cmd: Commands) -> Section:
    interpret = inputs.analysis("interpret")
    if interpret is None:
        return not_run_section(
            "features",
            "Feature dashboards",
            "Needs `analysis/interpret` (and `analysis/visual` for the image heatmaps).",
            [
                cmd.analyze("interpret"),
                cmd.analyze("visual"),
            ],
        )
    keep = _strongest(interpret, inputs.analysis("bias"), MAX_DASHBOARDS)
    chosen = interpret.isel(entry=keep)
    visual = inputs.analysis("visual")
    if visual is not None:
        wanted = set(
            zip(
                chosen["entry_layer"].values.tolist(),
                strings(chosen["entry_language"].values).tolist(),
                chosen["entry_feature"].values.tolist(),
                strict=True,
            )
        )
        have = zip(
            visual["entry_layer"].values.tolist(),
            strings(visual["entry_language"].values).tolist(),
            visual["entry_feature"].values.tolist(),
            strict=True,
        )
        visual = visual.isel(entry=[i for i, k in enumerate(have) if k in wanted])
    labels = read_labels(inputs.store)
    rows = {s: i for i, s in enumerate(labels.sample)}
    names = [str(labels.image[rows[s]]) for s in strings(chosen["top_sample"].values).ravel() if s]
    dashes = dashboards(chosen, visual, labels, inputs.thumbnails(names, THUMBNAIL))
    return features_section(dashes, n_inspected=interpret.sizes["entry"])


def _qualitative(inputs: ReportInputs, cmd: Commands) -> Section:
    def build(ds: xr.Dataset) -> Section:
        names = sorted({str(n) for n in strings(ds["image"].values) if n}) if "image" in ds else []
        return qualitative_section(ds, inputs.thumbnails(names, THUMBNAIL))

    return _from_group(inputs, cmd, build, "qualitative", "qualitative", "Qualitative examples")


def _interventions(inputs: ReportInputs, cmd: Commands) -> Section:
    summaries = inputs.interventions()
    if not summaries:
        return not_run_section(
            "interventions",
            "Interventions",
            "Needs intervention experiments (`analysis/intervene`).",
            [
                *([] if inputs.has_generation else [cmd.caption()]),  # interventions edit these captions
                cmd.intervene("ablate", intervention_layer(inputs)),
                cmd.intervene("amplify", intervention_layer(inputs)),
            ],
        )
    return interventions_section(summaries)


def _explanations(inputs: ReportInputs, cmd: Commands) -> Section:
    from sae_store.models.tokens import token_decoder

    explanations = (
        read_group(inputs.store, S.EXPLANATIONS, load=True)
        if has_group(inputs.store, S.EXPLANATIONS)
        else None
    )
    lens = inputs.analysis("logit_lens")
    if explanations is None and lens is None:
        return not_run_section(
            "explanations",
            "What the top biased features are",
            "Needs explanations (`explain`) or the logit lens (`analysis/logit_lens`).",
            [cmd.analyze("logit_lens"), cmd.explain()],
        )
    decode = token_decoder(inputs.store.model_folder) if lens is not None else None
    return explanations_section(
        explanations, lens, inputs.analysis("bias"), decode, list(inputs.layout.languages)
    )


#: Analyses whose results the report shows in sections of their own (above); every other registered
#: analysis gets :func:`~sae_store.report.analysis_sections.analysis_section`.
DEDICATED = frozenset(
    {"bias", "crosslingual", "crosslayer", "interpret", "visual", "qualitative", "logit_lens"}
)


def report_sections(inputs: ReportInputs) -> list[Section]:
    """All sections in reading order; each missing input gives a "not run yet" section."""
    cmd = Commands.for_inputs(inputs)
    grids = {"extract": inputs.extraction}
    if inputs.features is not None:
        grids["encode"] = inputs.features
    from_group = partial(_from_group, inputs, cmd)
    builders: list[Callable[[], Section]] = [
        lambda: completeness_section(pipeline_steps(inputs), grids),
        lambda: _quality(inputs, cmd),
        lambda: _evaluation(inputs, cmd),
        lambda: _bias_layers(inputs, cmd),
        partial(from_group, volcano_section, "bias", "volcano", "Volcano plots per layer and language"),
        lambda: _crosslingual(inputs, cmd),
        lambda: _features(inputs, cmd),
        lambda: _qualitative(inputs, cmd),
        lambda: _explanations(inputs, cmd),
        lambda: _interventions(inputs, cmd),
        *(
            partial(
                from_group,
                partial(analysis_section, a),
                a.name,
                f"analysis_{a.name}",
                f"Analysis: {a.name}",
                f" ({a.help})",
            )
            for a in ANALYSES
            if a.name not in DEDICATED
        ),
        lambda: usage_section(inputs.usage, quota=inputs.quota, inode_quota=inputs.inode_quota),
    ]
    return [build() for build in progress_bar(builders, desc="report sections", unit="section", leave=False)]
