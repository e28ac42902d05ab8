"""The analyses, each registered once: ``analyze``'s sub-commands, ``analyze all``'s order, the pipeline's
analysis step and the report's sections all follow this registry.

Adding an analysis is one module with its config class and its run function plus one
:func:`register_analysis` call. Its settings become options of ``analyze <name>`` and ``analyze all``
and keys of the pipeline YAML's ``analysis`` section; the report shows its stored results (a generic
section unless the report registers a dedicated one). This module imports only the config classes:
the run functions import what they need when they run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sae_store.analyze.config import (
    BiasConfig,
    CrossLayerConfig,
    CrossLingualConfig,
    InspectConfig,
    LogitLensConfig,
)
from sae_store.configbase import Settings
from sae_store.registry import Registry

if TYPE_CHECKING:
    from sae_store.analyze.context import AnalysisContext

#: Inputs an analysis may read besides the features group and its settings; each is one option.
Input = Literal["features", "samples", "model", "saes_by_language"]


@dataclass(frozen=True)
class Analysis:
    """One analysis: what it is called, what it reads, how it runs."""

    name: str
    help: str
    """One line for ``sae-store analyze --help``."""
    config: type[Settings]
    """Its settings (shared by several analyses when they read the same ones)."""
    run: Callable[[AnalysisContext, Any], Path]
    """Runs it on the context with its config; stores ``analysis/<name>``, writes and returns its JSON."""
    reads: tuple[str, ...] | None = None
    """The fields of :attr:`config` it uses (None: all); only those become its options."""
    needs: tuple[str, ...] = ()
    """Analyses whose stored results it reads (they run before it in ``analyze all``)."""
    saes: Literal["no", "optional", "required"] = "no"
    """Whether it reads the SAEs (``--saes``)."""
    cluster: bool = False
    """Its work runs on the dask cluster (``--cluster``)."""
    languages: int = 1
    """Fewest languages it needs; ``analyze all`` skips it (saying so) with fewer."""
    weights: bool = False
    """It reads the model's weights (``--model`` or the store's folder); ``analyze all`` skips it (saying
    so) when that folder is not here."""
    inputs: tuple[Input, ...] = ()
    result: str = ""
    """Its JSON file in the results folder (default ``<name>.json``)."""

    @property
    def result_file(self) -> str:
        return self.result or f"{self.name}.json"


ANALYSES: Registry[Analysis] = Registry("analysis")


def register_analysis(analysis: Analysis) -> Analysis:
    """Add ``analysis`` (``analyze all`` runs the registered ones in order); refused if the name is taken."""
    for need in analysis.needs:
        if need not in ANALYSES:
            raise ValueError(f"analysis {analysis.name!r} needs {need!r}, which is not registered before it")
    return ANALYSES.register(analysis.name, analysis)


def produced_by(name: str) -> str:
    """The command that writes the result ``analysis/<name>``."""
    return f"sae-store analyze {name}" if name in ANALYSES else f"sae-store {name}"


# ---------------------------------------------------------------- the built-in analyses


def _bias(ctx: AnalysisContext, config: BiasConfig) -> Path:
    from sae_store.analyze.pipeline import bias_step

    return bias_step(ctx.inputs, config, ctx.out_dir, client=ctx.client, **ctx.selection)


def _crosslingual(ctx: AnalysisContext, config: CrossLingualConfig) -> Path:
    from sae_store.analyze.pipeline import crosslingual_step

    decoders = ctx.decoders_by_language()
    return crosslingual_step(
        ctx.inputs, config, ctx.out_dir, decoders=decoders, client=ctx.client, **ctx.selection
    )


def _crosslayer(ctx: AnalysisContext, config: CrossLayerConfig) -> Path:
    from sae_store.analyze.pipeline import crosslayer_step

    decoders = ctx.decoders() if ctx.has_saes else None
    return crosslayer_step(
        ctx.inputs, config, ctx.out_dir, decoders=decoders, client=ctx.client, **ctx.selection
    )


def _interpret(ctx: AnalysisContext, config: InspectConfig) -> Path:
    from sae_store.analyze.pipeline import interpret_step

    return interpret_step(
        ctx.inputs, ctx.top_samples(config), config, ctx.out_dir, decode=ctx.token_decoder()
    )


def _visual(ctx: AnalysisContext, config: InspectConfig) -> Path:
    from sae_store.analyze.pipeline import visual_step

    return visual_step(ctx.inputs, ctx.top_samples(config), config, ctx.out_dir)


def _qualitative(ctx: AnalysisContext, config: InspectConfig) -> Path:
    from sae_store.analyze.pipeline import qualitative_step

    return qualitative_step(ctx.inputs, config, ctx.out_dir, samples=ctx.samples, **ctx.selection)


def _logit_lens(ctx: AnalysisContext, config: LogitLensConfig) -> Path:
    from sae_store.analyze.logit_lens import run_logit_lens
    from sae_store.analyze.pipeline import save_run

    run = run_logit_lens(ctx.saes(), ctx.model_dir(), config)
    return save_run(ctx.inputs, "logit_lens", run, ctx.out_dir)


register_analysis(
    Analysis(
        "bias",
        "per-feature gender tests (Welch, Mann-Whitney), Cohen's d, BH q-values, CIs, permutation null",
        BiasConfig,
        _bias,
        cluster=True,
        result="comprehensive_analysis_results.json",  # the name users' scripts read
    )
)
register_analysis(
    Analysis(
        "crosslingual",
        "EN vs AR: Spearman of effect sizes, top-k overlap vs chance, per-sample correlation",
        CrossLingualConfig,
        _crosslingual,
        cluster=True,
        languages=2,
        inputs=("saes_by_language",),
    )
)
register_analysis(
    Analysis(
        "crosslayer",
        "per layer: significant features, max |d|, gender probes; lineage to the next layer",
        CrossLayerConfig,
        _crosslayer,
        needs=("bias",),
        saes="optional",
        cluster=True,
    )
)
register_analysis(
    Analysis(
        "interpret",
        "top samples, firing tokens and distributions of the most biased features (needs --saes)",
        InspectConfig,
        _interpret,
        reads=("n_features", "top_k", "rank_by", "bins", "seed"),
        saes="required",
        inputs=("features", "model"),
    )
)
register_analysis(
    Analysis(
        "visual",
        "feature activation over the image-token grid, as arrays and heatmap PNGs (needs --saes)",
        InspectConfig,
        _visual,
        reads=("n_features", "top_k", "rank_by", "image_size", "seed"),
        saes="required",
        inputs=("features",),
    )
)
register_analysis(
    Analysis(
        "qualitative",
        "per sample, the most active biased features with interpretations and captions",
        InspectConfig,
        _qualitative,
        reads=("n_features", "n_samples", "features_per_sample", "seed"),
        needs=("bias",),
        inputs=("samples",),
    )
)
register_analysis(
    Analysis(
        "logit_lens",
        "output tokens each feature promotes and suppresses, and the gender words' ranks (needs --saes)",
        LogitLensConfig,
        _logit_lens,
        saes="required",
        inputs=("model",),
        weights=True,
    )
)
