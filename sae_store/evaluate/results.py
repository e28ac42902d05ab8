"""Where ``evaluate`` puts its results: one store group per SAE set, on the store's axes, and SAEBench's
output JSON per SAE.

The group ``evaluation/<set>`` (:func:`~sae_store.store.group_schema.evaluation_variables`) holds, per
layer, ``reconstruction`` (language, role, metric), ``reconstruction_total`` (role, metric; every
language), ``density_histogram`` (language, role, density_bin), ``behaviour`` (language, splice,
behaviour_metric), ``behaviour_total``, ``probing`` (probe, probe_input, probe_stat), the layer's SAE
record (JSON text) and a ``complete`` flag written last; array tasks evaluating different layers own
different files. Values not measured are NaN; an empty split has ``tokens`` 0.

Per SAE, ``<out>/core/<set>_layer_<L>_eval_results.json`` and
``<out>/sparse_probing/<set>_layer_<L>_eval_results.json`` follow SAEBench's core and sparse-probing
output layout (``eval_type_id``, ``eval_config``, ``eval_result_metrics`` by category,
``eval_result_details``, ``eval_result_unstructured``, ``sae_cfg_dict``; NaN written as -1 in the
metric categories, as SAEBench does), so its plotting and comparison tools read them. The
headline categories are the image and text tokens of every language (SAEBench leaves special tokens
out) and the model runs splicing at every position (``all``) when they ran; every split is under
``eval_result_unstructured``.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from sae_store._version import __version__
from sae_store.analyze.results import to_jsonable, write_json
from sae_store.errors import SaeStoreError
from sae_store.evaluate.behaviour import BEHAVIOUR_METRICS
from sae_store.evaluate.config import EvaluateConfig
from sae_store.evaluate.probing import PROBE_STATS, probe_inputs, probe_names
from sae_store.evaluate.stored import SPLIT_ROLES
from sae_store.store import ActivationStore
from sae_store.store import group_schema as G
from sae_store.store import schema as S
from sae_store.store.groups import create_group, delete_group
from sae_store.store.results import group_attrs, has_group, read_group, subgroups

#: Reconstruction and sparsity metrics per split (the keys of
#: :meth:`~sae_store.train.metrics.ReconstructionTotals.metrics`).
RECONSTRUCTION_METRICS = (
    "tokens", "explained_variance", "explained_variance_legacy", "fvu", "mse", "cossim", "l2_norm_in",
    "l2_norm_out", "l2_ratio", "relative_reconstruction_bias", "l0", "l1", "dead_fraction", "frac_alive",
    "freq_over_1_percent", "freq_over_10_percent", "mean_log10_density",
)  # fmt: skip
#: How a split without tokens is reported (its metrics are not NaN but absent).
NO_TOKENS = "no tokens"
#: Left edges of the log10 feature-density histogram's bins (width 0.25; densities below 1e-7 fall in
#: the first bin, dead latents in none).
DENSITY_EDGES = np.linspace(-7.0, 0.0, 29)


def group_path(name: str) -> str:
    """The store group of SAE set ``name``."""
    return f"{S.EVALUATION}/{name}"


def _coords(languages: list[str], config: EvaluateConfig) -> dict[str, np.ndarray]:
    return {
        G.ROLE_SPLIT: np.array(SPLIT_ROLES),
        G.METRIC: np.array(RECONSTRUCTION_METRICS),
        G.DENSITY_BIN: DENSITY_EDGES[:-1].copy(),
        G.SPLICE: np.array(config.splice),
        G.BEHAVIOUR_METRIC: np.array(BEHAVIOUR_METRICS),
        G.PROBE: np.array(probe_names(languages)),
        G.PROBE_INPUT: np.array(probe_inputs(config.probe_k)),
        G.PROBE_STAT: np.array(PROBE_STATS),
    }


def prepare_group(
    store: ActivationStore, name: str, spec: str, config: EvaluateConfig, *, overwrite: bool = False
) -> None:
    """Create set ``name``'s group, or check it was made for the same set with the same splits; with
    ``overwrite``, a group that was not is made again (its layers evaluated so far are dropped).

    Raises
    ------
    SaeStoreError
        Without ``overwrite``: the group holds another SAE set, splice positions or probe sizes than
        this run asks for.
    """
    path = group_path(name)
    if overwrite and has_group(store, path) and _mismatch(store, path, spec, config):
        delete_group(store, path)
    coords = _coords(list(store.layout.languages), config)
    sizes = {dim: len(values) for dim, values in coords.items()}
    attrs = {"saes": spec, "set": name, "config": config.to_dict(), "version": __version__}
    variables = G.evaluation_variables(store.layout, sizes)
    if create_group(
        store, path, variables, sizes=sizes, coords=coords, attrs=attrs, root_coords=G.EVALUATION_COORDS
    ):
        return
    problem = _mismatch(store, path, spec, config)
    if problem:
        raise SaeStoreError(problem)


def _mismatch(store: ActivationStore, path: str, spec: str, config: EvaluateConfig) -> str | None:
    """Why the existing group ``path`` cannot take this run's results (None if it can)."""
    have = read_group(store, path)
    for dim, values in _coords(list(store.layout.languages), config).items():
        stored = [str(v) if isinstance(v, str) else v for v in have[dim].values.tolist()]
        if stored != [str(v) if isinstance(v, str) else v for v in values.tolist()]:
            return (
                f"{path} was evaluated with {dim} {stored}, this run asks for {values.tolist()}; pass "
                "--overwrite to evaluate every layer of the set again, or the settings it was made with"
            )
    before = group_attrs(store, path).get("saes")
    if before != spec:
        return (
            f"{path} holds the evaluation of SAE set {before!r}, not {spec!r}; name this set otherwise "
            f"(--saes NAME={spec}) or pass --overwrite to replace it"
        )
    return None


def layer_done(store: ActivationStore, name: str, layer: int) -> bool:
    """Whether set ``name``'s evaluation of ``layer`` is on disk."""
    if not has_group(store, group_path(name)):
        return False
    return bool(store.array(S.COMPLETE, group_path(name))[store.layer_index(layer)])


@dataclass
class LayerValues:
    """One layer's evaluation of one SAE set, shaped like its group's arrays without the layer axis."""

    reconstruction: np.ndarray
    reconstruction_total: np.ndarray
    density_histogram: np.ndarray
    behaviour: np.ndarray
    behaviour_total: np.ndarray
    probing: np.ndarray
    record: dict[str, Any]


def write_layer(store: ActivationStore, name: str, layer: int, values: LayerValues) -> None:
    """Write ``values`` at ``layer`` of set ``name``'s group, then its ``complete`` flag."""
    path, li = group_path(name), store.layer_index(layer)
    for var in ("reconstruction", "reconstruction_total", "density_histogram", "behaviour", "behaviour_total",
                "probing"):  # fmt: skip
        store.array(var, path, mode="r+")[li] = getattr(values, var)
    store.array("sae_record", path, mode="r+")[li] = json.dumps(to_jsonable(values.record))
    store.array(S.COMPLETE, path, mode="r+")[li] = True


def read_evaluations(store: ActivationStore) -> dict[str, xr.Dataset]:
    """Every SAE set's evaluation, loaded, with only its complete layers (sets without any left out)."""
    out = {}
    for name in subgroups(store, S.EVALUATION):
        ds = read_group(store, group_path(name), load=True)
        ds = ds.isel({S.LAYER: np.flatnonzero(ds[S.COMPLETE].values)})
        if ds.sizes[S.LAYER]:
            out[name] = ds
    return out


def layer_record(ds: xr.Dataset, layer: int) -> dict[str, Any]:
    """The SAE record of ``layer`` in a set's evaluation."""
    text = str(ds["sae_record"].sel({S.LAYER: layer}).item())
    return dict(json.loads(text)) if text else {}


def _minus_one(metrics: dict[str, Any]) -> dict[str, Any]:
    # SAEBench writes a metric it could not measure as -1
    return {k: -1 if isinstance(v, float) and not math.isfinite(v) else v for k, v in metrics.items()}


def _header(
    name: str, layer: int, eval_type: str, config: dict[str, Any], record: dict[str, Any]
) -> dict[str, Any]:
    return {
        "eval_type_id": eval_type,
        "eval_config": config,
        "eval_id": str(uuid.uuid4()),
        "datetime_epoch_millis": int(time.time() * 1000),
        "sae_bench_commit_hash": f"sae-store {__version__}",
        "sae_lens_id": f"layer_{layer}",
        "sae_lens_release_id": name,
        "sae_lens_version": None,
        "sae_cfg_dict": record.get("cfg", {}),
    }


def _split(metrics: dict[str, float]) -> dict[str, Any]:
    """A split's metrics, or that it had no tokens (rather than a row of NaN)."""
    return metrics if metrics["tokens"] > 0 else {"tokens": 0, "note": NO_TOKENS}


def _probe_key(label: str) -> str:
    """SAEBench's sparse-probing name of a probe input (``sae_top_2`` -> ``sae_top_2_test_accuracy``,
    ``raw_all`` -> ``llm_test_accuracy``: SAEBench calls the raw activations' probes ``llm``)."""
    kind, _, rest = label.partition("_")
    prefix = "sae" if kind == "sae" else "llm"
    return f"{prefix}_test_accuracy" if rest == "all" else f"{prefix}_{rest}_test_accuracy"


def write_saebench(
    out_dir: Path,
    name: str,
    layer: int,
    values: LayerValues,
    ds_coords: dict[str, list[Any]],
    config: dict[str, Any],
    feature_density: list[float],
) -> list[Path]:
    """Write SAEBench's core and sparse-probing JSON of one SAE (see the module docstring);
    ``feature_density`` is each latent's firing frequency over image and text tokens."""
    rec = values.record
    roles, metrics = ds_coords[G.ROLE_SPLIT], list(RECONSTRUCTION_METRICS)
    recon = dict(zip(metrics, values.reconstruction_total[roles.index("all")].tolist(), strict=True))
    splices, bm = ds_coords[G.SPLICE], list(BEHAVIOUR_METRICS)
    main = "all" if "all" in splices else splices[0]
    beh = dict(zip(bm, values.behaviour_total[splices.index(main)].tolist(), strict=True))
    categories = {
        "model_behavior_preservation": {
            k: beh[k] for k in ("kl_div_score", "kl_div_with_ablation", "kl_div_with_sae")
        },
        "model_performance_preservation": {
            k: beh[k]
            for k in ("ce_loss_score", "ce_loss_with_ablation", "ce_loss_with_sae", "ce_loss_without_sae")
        },
        "reconstruction_quality": {
            k: recon[k] for k in ("explained_variance", "explained_variance_legacy", "mse", "cossim")
        },
        "shrinkage": {
            k: recon[k] for k in ("l2_norm_in", "l2_norm_out", "l2_ratio", "relative_reconstruction_bias")
        },
        "sparsity": {k: recon[k] for k in ("l0", "l1")},
        "token_stats": {
            "total_tokens_eval_reconstruction": int(beh["tokens"]) if math.isfinite(beh["tokens"]) else 0,
            "total_tokens_eval_sparsity_variance": int(recon["tokens"]),
        },
        "misc_metrics": {k: recon[k] for k in ("frac_alive", "freq_over_1_percent", "freq_over_10_percent")},
    }
    unstructured = {
        "splits": {
            f"{lang}/{role}": _split(dict(zip(metrics, values.reconstruction[g, r].tolist(), strict=True)))
            for g, lang in enumerate(ds_coords[S.LANGUAGE])
            for r, role in enumerate(roles)
        },
        "behaviour": {
            f"{lang}/{splice}": dict(zip(bm, values.behaviour[g, s].tolist(), strict=True))
            for g, lang in enumerate([*ds_coords[S.LANGUAGE]])
            for s, splice in enumerate(splices)
        },
        "record": rec,
    }
    core = {
        **_header(name, layer, "core", config, rec),
        "eval_result_metrics": {k: _minus_one(v) for k, v in categories.items()},
        "eval_result_details": [{"index": i, "feature_density": d} for i, d in enumerate(feature_density)],
        "eval_result_unstructured": unstructured,
    }
    tasks, inputs = ds_coords[G.PROBE], ds_coords[G.PROBE_INPUT]
    accuracy = values.probing[..., PROBE_STATS.index("accuracy")]  # [task, input]
    keys = [_probe_key(label) for label in inputs]
    ran = np.isfinite(accuracy)
    mean = np.where(ran.any(0), np.nansum(accuracy, 0) / np.maximum(ran.sum(0), 1), np.nan)
    averaged = dict(zip(keys, mean.tolist(), strict=True))
    probing = {
        **_header(name, layer, "sparse_probing", config, rec),
        "eval_result_metrics": {
            kind: _minus_one({k: v for k, v in averaged.items() if k.startswith(kind)})
            for kind in ("llm", "sae")
        },
        "eval_result_details": [
            {"dataset_name": task, **_minus_one(dict(zip(keys, accuracy[t].tolist(), strict=True)))}
            for t, task in enumerate(tasks)
        ],
        "eval_result_unstructured": {"skipped": rec.get("probes_skipped", {})},
    }
    stem = f"{name}_layer_{layer}_eval_results.json"
    return [write_json(out_dir / "core", stem, core), write_json(out_dir / "sparse_probing", stem, probing)]
