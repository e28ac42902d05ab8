"""``sae-store evaluate`` on a store: every SAE set on the same samples, layer by layer.

Per layer, the SAEs of every set that has one (and has not evaluated it yet) are loaded together;
the stored tokens are read once for all of them (:mod:`.stored`), the probes run on their pooled
latents and on the raw vectors (:mod:`.probing`), the model runs once clean and once per ablation for
all of them (:mod:`.behaviour`), and each set's values go to its group and its SAEBench JSON
(:mod:`.results`) before the next layer: a killed run resumes at the first layer not flagged
complete, and array tasks over layers write different files.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sae_store.analyze.probe import ProbeResult
from sae_store.device import resolve_device
from sae_store.errors import DataError, SaeStoreError
from sae_store.evaluate.behaviour import (
    BEHAVIOUR_METRICS,
    BehaviourTotals,
    LanguageCaptions,
    language_captions,
    measure_behaviour,
)
from sae_store.evaluate.compare import best_per_layer, comparison_table
from sae_store.evaluate.config import EvaluateConfig
from sae_store.evaluate.probing import probe_array, probe_inputs, probe_names, run_probes
from sae_store.evaluate.results import (
    DENSITY_EDGES,
    RECONSTRUCTION_METRICS,
    LayerValues,
    group_path,
    layer_done,
    prepare_group,
    read_evaluations,
    write_layer,
    write_saebench,
)
from sae_store.evaluate.sets import SaeSet, find_sets
from sae_store.evaluate.stored import SPLIT_ROLES, SaeTotals, StoredPass, measure_stored
from sae_store.evaluate.tokens import StoredTokens, evaluated_samples
from sae_store.intervene.generation import LazyImages, store_images
from sae_store.models.config import ModelRunConfig
from sae_store.models.loader import LoadedModel
from sae_store.roles import TokenRole
from sae_store.store import ActivationStore
from sae_store.store import group_schema as G
from sae_store.store.results import read_labels
from sae_store.train.encode import sae_record
from sae_store.train.formats import LoadedSae, load_sae
from sae_store.train.metrics import ReconstructionTotals

log = logging.getLogger(__name__)


@dataclass
class EvaluateOutcome:
    """What one ``evaluate`` call did, and the comparison of every set the store holds."""

    evaluated: dict[str, list[int]] = field(default_factory=dict)
    """Layers evaluated by this call, per set."""
    done_before: dict[str, list[int]] = field(default_factory=dict)
    """Layers already complete, per set."""
    absent: dict[str, list[int]] = field(default_factory=dict)
    """Layers asked for that a set has no SAE for."""
    empty: dict[str, dict[int, list[str]]] = field(default_factory=dict)
    """Splits (``language/role``) without tokens, per set and layer evaluated by this call."""
    behaviour: str = "measured"
    """``measured``, or why the model runs were skipped and how to run them."""
    files: list[Path] = field(default_factory=list)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    best: pd.DataFrame = field(default_factory=pd.DataFrame)


class _Model:
    """The model and the samples' captions and images, loaded when a layer first needs them (or the
    reason they cannot be)."""

    def __init__(
        self,
        store: ActivationStore,
        config: EvaluateConfig,
        samples: np.ndarray,
        model: str | Path | None,
        images_dir: str | Path | None,
        run: ModelRunConfig,
    ) -> None:
        self.store, self.config, self.samples, self.run = store, config, samples, run
        self.folder, self.given = model or store.model_folder, model is not None
        self.images: LazyImages | None = None
        self.loaded: LoadedModel | None = None
        self.languages: dict[int, LanguageCaptions] = {}
        self.reason = self._why_not(images_dir)

    def _why_not(self, images_dir: str | Path | None) -> str | None:
        if not self.config.behaviour:
            return "skipped (--no-behaviour)"
        if not self.folder or not Path(self.folder).is_dir():
            whose = "--model" if self.given else "the one the store records"
            return (
                f"skipped: no model folder at {str(self.folder or '')!r} ({whose}); pass --model DIR (the "
                "model the store was extracted with) to measure CE loss recovered and the KL score"
            )
        try:
            self.images = store_images(self.store, images_dir)
        except SaeStoreError as e:
            return f"skipped: {e}"
        return None

    def get(self) -> LoadedModel:
        if self.loaded is None:
            from sae_store.intervene.run import load_store_model

            assert self.folder is not None and self.images is not None
            self.loaded = load_store_model(self.store, self.folder, self.run)
            self.languages = language_captions(
                self.store, self.loaded, self.samples, self.images, self.config.caption_tokens
            )
            if not self.languages:
                raise DataError("no evaluated sample has a reference caption and a prompt in any language")
        return self.loaded


def _mean_table(totals: SaeTotals, g: int, d_in: int) -> torch.Tensor:
    """[4, d_in] the mean stored residual of each token role (rows by TokenRole code) in language ``g``."""
    table = torch.zeros(len(TokenRole), d_in, dtype=torch.float64)
    for role in (TokenRole.SPECIAL, TokenRole.TEXT, TokenRole.IMAGE):
        split = totals.split(g, role.name.lower())
        if split is not None and split.tokens:
            table[int(role)] = split.mean
    return table.float()


def _metrics(totals: ReconstructionTotals | None) -> list[float]:
    m = totals.metrics() if totals is not None else {"tokens": 0}
    return [float(m.get(k, np.nan)) for k in RECONSTRUCTION_METRICS]


def _histogram(totals: ReconstructionTotals | None) -> np.ndarray:
    if totals is None or not totals.tokens or totals.fired is None:
        return np.zeros(len(DENSITY_EDGES) - 1, dtype=np.int32)
    density = totals.fired.double().numpy() / totals.tokens
    logd = np.clip(np.log10(density[density > 0]), DENSITY_EDGES[0], DENSITY_EDGES[-1])
    return np.histogram(logd, bins=DENSITY_EDGES)[0].astype(np.int32)


def _values(
    store: ActivationStore,
    name: str,
    loaded: LoadedSae,
    folder: Path,
    stored: StoredPass,
    behaviour: BehaviourTotals | None,
    probes: tuple[dict[tuple[str, str], ProbeResult], dict[str, str]],
    config: EvaluateConfig,
    record: dict[str, Any],
) -> tuple[LayerValues, list[float]]:
    """One set's layer values and its latents' firing density over image and text tokens."""
    rec = stored.saes[name]
    langs = range(len(store.layout.languages))
    splits = [[rec.split(g, r) for r in SPLIT_ROLES] for g in langs]
    empty = [
        f"{store.layout.languages[g]}/{r}" for g in langs for r, t in zip(SPLIT_ROLES, splits[g], strict=True)
        if t is None or not t.tokens
    ]  # fmt: skip
    nan = np.full((len(config.splice), len(BEHAVIOUR_METRICS)), np.nan)

    def beh(g: int | None) -> np.ndarray:
        if behaviour is None:
            return nan
        return np.array(
            [[behaviour.metrics(name, g, s)[k] for k in BEHAVIOUR_METRICS] for s in config.splice]
        )

    total = rec.split(None, "all")
    info = sae_record(folder, store.attrs.get("model", {}), loaded)
    cfg = {**loaded.cfg, "architecture": info["architecture"], "d_in": info["d_in"], "d_sae": info["d_sae"]}
    values = LayerValues(
        reconstruction=np.array([[_metrics(t) for t in row] for row in splits]),
        reconstruction_total=np.array([_metrics(rec.split(None, r)) for r in SPLIT_ROLES]),
        density_histogram=np.array([[_histogram(t) for t in row] for row in splits]),
        behaviour=np.stack([beh(g) for g in langs]),
        behaviour_total=beh(None),
        probing=probe_array(probes[0], probe_names(store.layout.languages), probe_inputs(config.probe_k)),
        record={**info, **record, "cfg": cfg, "empty_splits": empty, "probes_skipped": probes[1]},
    )
    density = (
        [] if total is None or total.fired is None else (total.fired.double() / max(total.tokens, 1)).tolist()
    )
    return values, density


def layer_complete(store: ActivationStore, specs: Sequence[str], layer: int) -> bool:
    """Whether every set of ``specs`` that has an SAE for ``layer`` has evaluated it."""
    from sae_store.evaluate.sets import parse_sets
    from sae_store.train.discovery import find_saes

    return all(
        layer_done(store, name, layer)
        for name, spec in parse_sets(specs).items()
        if layer in find_saes(spec, required=False)
    )


def evaluate_store(
    store: ActivationStore,
    specs: Sequence[str],
    config: EvaluateConfig | None = None,
    *,
    layers: Sequence[int] | None = None,
    out_dir: str | Path | None = None,
    model: str | Path | None = None,
    images_dir: str | Path | None = None,
    model_config: ModelRunConfig | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> EvaluateOutcome:
    """Evaluate every SAE set of ``specs`` (``[NAME=]DIR``) at ``layers`` (default: the store's).

    Results go to the store's ``evaluation/<set>`` groups and, as SAEBench JSON, to
    ``out_dir`` (default ``results/evaluate`` beside the store).

    Raises
    ------
    SaeStoreError
        A layer not in the store; a set as :func:`~sae_store.evaluate.sets.find_sets` refuses it; a group
        evaluated with other settings; no sample to evaluate.
    IncompleteError
        A layer is not fully extracted.
    """
    config = config or EvaluateConfig()
    run = model_config or ModelRunConfig()
    layers = list(store.layout.layers if layers is None else layers)
    for layer in layers:
        store.layer_index(layer)
    sets = find_sets(specs, layers, store.layout.hidden_size)
    for s in sets:
        prepare_group(store, s.name, s.spec, config, overwrite=overwrite)
    samples = evaluated_samples(store, config)
    if not len(samples):
        raise SaeStoreError(
            f"no samples to evaluate: {config.samples} samples of {store.layout.n_samples} with val_fraction "
            f"{config.val_fraction}; raise --val-fraction or pass --sample-set all"
        )
    out = Path(out_dir) if out_dir is not None else store.path.parent / "results" / "evaluate"
    device = str(resolve_device(run.device))
    runner = _Model(store, config, samples, model, images_dir, run)
    outcome = EvaluateOutcome(behaviour=runner.reason or "measured")
    outcome.absent = {s.name: [la for la in layers if la not in s.folders] for s in sets}
    for layer in layers:
        todo: list[SaeSet] = []
        for s in sets:
            if layer in s.folders:
                done = layer_done(store, s.name, layer) and not overwrite
                (outcome.done_before if done else outcome.evaluated).setdefault(s.name, []).append(layer)
                todo += [] if done else [s]
        if todo:
            files, empty = _evaluate_layer(store, layer, todo, samples, config, runner, device, out, progress)
            outcome.files += files
            for name, splits in empty.items():
                if splits:
                    outcome.empty.setdefault(name, {})[layer] = splits
    outcome.table = comparison_table(read_evaluations(store))
    outcome.best = best_per_layer(outcome.table, config.rank_by)
    return outcome


def _evaluate_layer(
    store: ActivationStore,
    layer: int,
    sets: list[SaeSet],
    samples: np.ndarray,
    config: EvaluateConfig,
    model: _Model,
    device: str,
    out: Path,
    progress: bool,
) -> tuple[list[Path], dict[str, list[str]]]:
    """Evaluate ``sets`` at ``layer``; the files written, and each set's splits without tokens."""
    loaded = {s.name: load_sae(s.folders[layer], device=device) for s in sets}
    saes = {name: ls.sae for name, ls in loaded.items()}
    tokens = StoredTokens(store, layer, samples)
    stored = measure_stored(tokens, saes, batch_tokens=config.batch_tokens, device=device, progress=progress)
    genders = read_labels(store).gender[samples]
    languages = list(store.layout.languages)
    kw: dict[str, Any] = {
        "probe_k": config.probe_k,
        "folds": config.folds,
        "C": config.C,
        "seed": config.seed,
    }
    raw = run_probes(stored.pooled_means(), "raw", genders, languages, **kw)
    behaviour = None
    if model.reason is None:
        loaded_model = model.get()
        first = stored.saes[sets[0].name]
        d_in = store.layout.hidden_size
        means = {g: _mean_table(first, g, d_in) for g in model.languages} if config.mean_ablation else None
        behaviour = measure_behaviour(
            loaded_model, layer, model.languages, saes, means, config, progress=progress
        )
    record = {
        "layer": layer,
        "samples": len(samples),
        "sample_choice": config.samples,
        "nonfinite_skipped": stored.nonfinite,
        "behaviour": model.reason or "measured",
    }
    files, empty = [], {}
    for s in sets:
        sae_probes, skipped = run_probes(stored.pooled_means(s.name), "sae", genders, languages, **kw)
        probes = ({**raw[0], **sae_probes}, {**raw[1], **skipped})
        values, density = _values(
            store, s.name, loaded[s.name], s.folders[layer], stored, behaviour, probes, config, record
        )
        coords: dict[str, list[Any]] = {
            G.ROLE_SPLIT: list(SPLIT_ROLES),
            G.SPLICE: list(config.splice),
            G.PROBE: probe_names(languages),
            G.PROBE_INPUT: probe_inputs(config.probe_k),
            "language": languages,
        }
        files += write_saebench(out, s.name, layer, values, coords, config.to_dict(), density)
        write_layer(store, s.name, layer, values)
        empty[s.name] = values.record["empty_splits"]
        log.info("layer %d of %s evaluated (%s)", layer, s.name, group_path(s.name))
    return files, empty
