"""Running analyses on a store: what they read (opened once and shared) and ``analyze all``'s order.

:func:`run_analyses` is what ``sae-store analyze <name>|all`` calls: it opens the store's features
group and labels, loads the SAEs only if an analysis reads them (checked against the features), starts
the dask cluster only if an analysis runs on it, and runs the analyses in registry order.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sae_store.analyze.config import ClusterConfig
from sae_store.analyze.registry import ANALYSES, Analysis
from sae_store.configbase import Settings
from sae_store.errors import SaeStoreError
from sae_store.models.tokens import TokenDecoder, token_decoder
from sae_store.selection import format_ranges

if TYPE_CHECKING:
    from sae_store.analyze.data import Inputs

log = logging.getLogger(__name__)


@dataclass
class AnalysisContext:
    """What the analyses of one run read: the opened store, the selection, the SAEs, extra inputs."""

    inputs: Inputs
    """The store, its features group and labels."""
    out_dir: Path
    layers: list[int] | None = None
    languages: list[str] | None = None
    saes_spec: str | None = None
    """``--saes``: a folder of per-layer SAEs or a ``{L}`` pattern (any layout ``find_saes`` reads)."""
    saes_by_language: Mapping[str, str] | None = None
    features: list[int] | None = None
    """Features to inspect instead of the most biased ones."""
    samples: list[str] | None = None
    """Samples of the qualitative table instead of random ones."""
    model: str | None = None
    """Model folder whose tokenizer names tokens (default: the store's)."""
    client: Any = None
    _saes: dict[int, Any] | None = field(default=None, repr=False)
    _tops: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)

    @property
    def selection(self) -> dict[str, Any]:
        return {"layers": self.layers, "languages": self.languages}

    @property
    def has_saes(self) -> bool:
        return self.saes_spec is not None

    @property
    def analysed_layers(self) -> list[int]:
        if self.layers is not None:
            return list(self.layers)
        return [int(v) for v in self.inputs.features.layer.values]

    def saes(self) -> dict[int, Any]:
        """The SAE module of each analysed layer (loaded once, checked against the store's features)."""
        if self._saes is None:
            if self.saes_spec is None:
                raise SaeStoreError("this analysis needs the SAEs: pass --saes DIR (with layer_<L> folders)")
            self._saes = _load_saes(self.saes_spec, self.analysed_layers, self.inputs)
        return self._saes

    def decoders(self) -> dict[int, np.ndarray]:
        return _decoders(self.saes())

    def decoders_by_language(self) -> dict[int, tuple[np.ndarray, np.ndarray]] | None:
        """Decoder pairs of separately trained SAEs per language (``--saes-by-language``), if given."""
        if not self.saes_by_language:
            return None
        langs = list(self.languages or self.saes_by_language)
        per = {
            lang: _decoders(_load_saes(self.saes_by_language[lang], self.analysed_layers, self.inputs))
            for lang in langs[:2]
        }
        return {layer: (per[langs[0]][layer], per[langs[1]][layer]) for layer in self.analysed_layers}

    def top_samples(self, config: Any) -> Any:
        """Top samples of the inspected features (computed once for ``interpret`` and ``visual``)."""
        from sae_store.analyze.pipeline import top_samples_step

        key = (config.n_features, config.top_k, config.rank_by)
        if key not in self._tops:
            encoders = {layer: TorchEncoder(sae) for layer, sae in self.saes().items()}
            self._tops[key] = top_samples_step(
                self.inputs, config, encoders=encoders, given=self.features, **self.selection
            )
        return self._tops[key]

    def model_dir(self) -> str:
        """The model folder: ``--model``, or the one the store was extracted with."""
        return str(self.model or self.inputs.store.model_folder or "")

    def token_decoder(self) -> TokenDecoder | None:
        """Token id -> text with the model's tokenizer (``--model`` or the store's folder), if it loads."""
        decode = token_decoder(self.model_dir())
        if decode is None:
            log.info("no tokenizer (pass --model DIR): tokens are shown by id")
        return decode


class TorchEncoder:
    """Adapts a loaded SAE module to the analyses' ``Encoder``: numpy in, numpy out."""

    def __init__(self, sae: Any) -> None:
        self.sae = sae

    def __call__(self, x_ND: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.sae.encode(torch.as_tensor(x_ND, dtype=torch.float32)).numpy()


def _load_saes(spec: str, layers: list[int], inputs: Inputs) -> dict[int, Any]:
    """The SAE module of each layer in ``spec``, checked against the store and its features group."""
    from sae_store.analyze.data import check_d_in
    from sae_store.train.discovery import find_saes
    from sae_store.train.formats import load_sae

    out = {}
    n_feat = inputs.features.sizes["feature"]
    for layer, path in find_saes(spec, layers).items():
        sae = load_sae(path).sae.eval()
        check_d_in(sae.d_in, inputs.store, f"the SAE {str(path)!r}")
        if sae.d_sae != n_feat:
            raise SaeStoreError(
                f"the SAE {str(path)!r} has d_sae={sae.d_sae} but the features group has {n_feat} features; "
                "use the SAEs the features were encoded with"
            )
        out[layer] = sae
    return out


def _decoders(saes: dict[int, Any]) -> dict[int, np.ndarray]:
    return {layer: sae.W_dec.detach().cpu().numpy() for layer, sae in saes.items()}


def default_layers(inputs: Inputs) -> list[int] | None:
    """The layers ``encode`` encoded (those with an SAE when it ran), saying which of the store's layers
    are left out; None (every layer) when all were encoded."""
    from sae_store.store.results import encoded_layers

    store = inputs.store
    encoded = encoded_layers(store, inputs.features)
    missing = [layer for layer in store.layout.layers if layer not in encoded]
    if not missing or not encoded:  # nothing encoded: each analysis says what to run
        return None
    log.warning(
        "layers %s have no encoded features (they had no SAE when `encode` ran): analysing layers %s; "
        "to include them, train their SAEs (`sae-store train %s --layer L --out SAE_DIR`) and encode them "
        "(`sae-store encode %s --saes SAE_DIR --layers %s`)",
        format_ranges(missing, ","), format_ranges(encoded, ","), store.path, store.path,
        format_ranges(missing, ","),
    )  # fmt: skip
    return encoded


def selected_analyses(which: str, n_languages: int, model_dir: str = "") -> list[Analysis]:
    """``which`` (a registered analysis), or for ``all`` every registered one in order, leaving out (and
    saying so) those that need more languages than are analysed or model weights that are not here."""
    here = bool(model_dir) and Path(model_dir).is_dir()
    if which != "all":
        if ANALYSES[which].weights and not here:
            raise SaeStoreError(
                f"`analyze {which}` needs the model's weights: pass --model DIR (the store records "
                f"{model_dir!r}, which is not a folder here)"
            )
        return [ANALYSES[which]]
    chosen = []
    for analysis in ANALYSES:
        if analysis.weights and not here:
            log.info("%s skipped: no model folder %r here (pass --model DIR)", analysis.name, model_dir)
        elif n_languages < analysis.languages:
            log.info(
                "%s skipped: it needs %d languages, %d are analysed",
                analysis.name,
                analysis.languages,
                n_languages,
            )
        else:
            chosen.append(analysis)
    return chosen


def run_analyses(
    store_path: str | Path,
    which: str,
    configs: Mapping[type, Settings],
    *,
    out_dir: str | Path | None = None,
    cluster: ClusterConfig | None = None,
    features_group: str = "features",
    **context: Any,
) -> list[Path]:
    """Run analysis ``which`` (or ``all`` of them, in registry order) on a store; return the JSON paths.

    Parameters
    ----------
    configs
        The settings of each analysis, by config class (a missing one takes its defaults).
    out_dir
        Folder of the JSON results (default: ``results/`` beside the store).
    cluster
        Where the dask tasks of the analyses that use a cluster run (default: a local cluster).
    context
        The fields of :class:`AnalysisContext`: ``layers``, ``languages``, ``saes_spec``, ...
    """
    from sae_store.analyze.cluster import open_cluster
    from sae_store.analyze.data import open_inputs

    inputs = open_inputs(store_path, features_group)
    out = Path(out_dir) if out_dir is not None else Path(store_path).resolve().parent / "results"
    ctx = AnalysisContext(inputs, out, **context)
    if ctx.layers is None:
        ctx.layers = default_layers(inputs)
    n_languages = len(ctx.languages or inputs.features.language.values)
    analyses = selected_analyses(which, n_languages, ctx.model_dir())
    if ctx.saes_spec is None:
        needing = [a.name for a in analyses if a.saes == "required"]
        if needing:
            named = f" (for {', '.join(needing)})" if which == "all" else ""
            raise SaeStoreError(f"`analyze {which}` needs the SAEs: pass --saes DIR{named}")
    use_cluster = any(a.cluster for a in analyses)
    written: list[Path] = []
    with open_cluster((cluster or ClusterConfig()) if use_cluster else ClusterConfig(kind="none")) as client:
        ctx.client = client
        for analysis in analyses:
            config = configs.get(analysis.config) or analysis.config()
            written.append(analysis.run(ctx, config))
    return written
