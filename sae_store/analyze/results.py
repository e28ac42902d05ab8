"""Where results go: one sub-group of the store's ``analysis`` group per analysis, and JSON files.

Each run of an analysis replaces its sub-group and JSON file. Layout (``attrs["config"]`` holds the
configuration that produced each one):

- ``analysis/bias`` (``comprehensive_analysis_results.json``): per (layer, language, feature)
  ``male_mean``, ``female_mean``, ``male_freq``, ``female_freq``, ``d`` (male minus female), ``t``,
  ``df``, ``p_welch``, ``u``, ``p_mwu``, ``q``, ``ci_low``/``ci_high`` (reported features only, NaN
  elsewhere); per (layer, language) ``n_male``, ``n_female``, ``n_unknown``, ``n_ambiguous``,
  ``n_not_encoded``, ``n_significant``; ``null_discoveries`` (layer, language, permutation).
- ``analysis/crosslingual`` (``crosslingual.json``): per (layer, feature) ``d_<a>``, ``d_<b>``,
  ``paired_r`` (and ``matched_<b>_feature``, ``match_cosine`` for separate SAEs); per layer ``rho``,
  ``rho_bias_corrected``, ``rho_low``, ``rho_high``, ``overlap_{abs,male,female}_{count,jaccard,
  expected,p_value}``.
- ``analysis/crosslayer`` (``crosslayer.json``, which also holds the lineage): per (layer, language)
  ``n_significant``, ``max_abs_d``, ``probe_{sae,raw}_{accuracy,ci_low,ci_high}``,
  ``probe_sae_balanced_accuracy``, ``probe_baseline``.
- ``analysis/interpret`` (``interpret.json``): per inspected ``entry`` (``entry_layer``,
  ``entry_language``, ``entry_feature``, ``direction``) a ``description``, ``top_sample`` and
  ``top_value`` (entry, rank), ``histogram`` (entry, hist_language, gender, bin) and its edges.
- ``analysis/visual`` (``visual.json``, PNGs in ``visual/``): ``map`` (entry, rank, gy, gx) of each
  top sample's image-token activations, ``mean_map`` (entry, gy, gx), ``sample`` (entry, rank).
- ``analysis/qualitative`` (``qualitative.json``, ``.csv``, ``.md``): one ``row`` per (sample,
  layer, language, feature) with the columns of :data:`~sae_store.analyze.qualitative.COLUMNS`.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from sae_store.analyze.data import has_group
from sae_store.errors import IncompleteError
from sae_store.store import ActivationStore

ANALYSIS_GROUP = "analysis"
# zarr's notice that consolidated metadata is not in the v3 spec yet: the store relies on it knowingly
_CONSOLIDATED_WARNING = "Consolidated metadata is currently not part"

#: The command producing each analysis, named when a later analysis needs it.
PRODUCED_BY = {
    name: f"sae-store analyze {name}"
    for name in ("bias", "crosslingual", "crosslayer", "interpret", "visual")
}


def write_analysis(store: ActivationStore, name: str, ds: xr.Dataset) -> str:
    """Write ``ds`` as ``analysis/<name>`` of the store, replacing an earlier result; returns the group path.

    Dict- and list-valued attributes are stored as JSON text so any zarr reader can load them.
    """
    ds = ds.copy()
    ds.attrs = {
        k: json.dumps(to_jsonable(v)) if isinstance(v, dict | list | tuple) else v
        for k, v in ds.attrs.items()
    }
    group = f"{ANALYSIS_GROUP}/{name}"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_CONSOLIDATED_WARNING)
        ds.to_zarr(store.path, group=group, mode="w", consolidated=True)
    return group


def has_analysis(store: ActivationStore, name: str) -> bool:
    """Whether the store holds the result ``analysis/<name>``."""
    return has_group(store, f"{ANALYSIS_GROUP}/{name}")


def read_analysis(store: ActivationStore, name: str) -> xr.Dataset:
    """The stored result ``analysis/<name>``, loaded; refused with the command to run if it is missing."""
    if not has_analysis(store, name):
        raise IncompleteError(
            f"the store {str(store.path)!r} has no {name} results yet; run `{PRODUCED_BY.get(name, name)} "
            f"{store.path}` first"
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_CONSOLIDATED_WARNING)
        ds = xr.open_zarr(store.path, group=f"{ANALYSIS_GROUP}/{name}", consolidated=True).load()
    for k, v in list(ds.attrs.items()):
        if isinstance(v, str) and v[:1] in "{[":
            ds.attrs[k] = json.loads(v)
    return ds


def to_jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays turned into Python types and NaN/inf into None (JSON null)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(out_dir: str | Path, filename: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON (strict: no NaN) to ``out_dir/filename``; returns the path."""
    path = Path(out_dir) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(payload), indent=2, allow_nan=False, ensure_ascii=False))
    tmp.replace(path)
    return path
