"""Loading everything the report shows: the store's own accounting, SAE folders and result files.

This is the report's only I/O on the input side. Every value is read as written by the step that
produced it (store flags and usage through the store API, SAE metrics from ``cfg.json`` and
``metrics.jsonl``, analysis results from their JSON files and the store's ``analysis`` group);
nothing is recomputed here. Inputs that do not exist yet are ``None``/empty, and the sections say
what to run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from sae_store.analyze.registry import ANALYSES
from sae_store.analyze.results import read_analysis
from sae_store.data.images import load_image
from sae_store.errors import SaeStoreError
from sae_store.jsonfile import read_json
from sae_store.store import ActivationStore, Completion, Usage, completion, open_store, store_usage
from sae_store.store import schema as S
from sae_store.store.results import intervention_summaries, sibling_folder, stale_reason, subgroups
from sae_store.train.discovery import SaeRecord, encoded_saes, sae_records

#: JSON files of the results folder the report reads (everything else comes from the store's groups).
BIAS_JSON = ANALYSES["bias"].result_file
RESULT_FILES = (BIAS_JSON,)


@dataclass
class ReportInputs:
    """Everything a report is made from, already loaded."""

    store: ActivationStore
    usage: Usage
    extraction: Completion
    """Completion of the activations (root ``complete`` flags)."""
    features: Completion | None
    """Completion of the ``features`` group; ``None`` when ``encode`` has not run."""
    saes: dict[int, SaeRecord]
    saes_dir: Path | None
    results: dict[str, Any]
    """The JSON result files the report reads (:data:`RESULT_FILES`), parsed, by file name."""
    results_dir: Path | None
    analysis_groups: tuple[str, ...]
    """Sub-groups present in the store's ``analysis`` group (stale ones left out)."""
    has_generation: bool
    images_dir: Path | None
    quota: int | None = None
    inode_quota: int | None = None
    stale: dict[str, str] = field(default_factory=dict)
    """Sub-groups of ``analysis`` computed from features that were encoded again since, with why."""
    _analyses: dict[str, xr.Dataset] = field(default_factory=dict, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def analysis(self, name: str) -> xr.Dataset | None:
        """The store's ``analysis/<name>`` result (loaded once), or ``None`` if it was not written."""
        if name not in self.analysis_groups:
            return None
        if name not in self._analyses:
            self._analyses[name] = read_analysis(self.store, name)
        return self._analyses[name]

    def evaluations(self) -> dict[str, xr.Dataset]:
        """Every SAE set's evaluation (``sae-store evaluate``; loaded once), by set name."""
        if "evaluations" not in self._cache:
            from sae_store.evaluate import read_evaluations

            self._cache["evaluations"] = read_evaluations(self.store)
        return dict(self._cache["evaluations"])

    def interventions(self) -> dict[str, dict[int, dict[str, Any]]]:
        """Summaries of every intervention experiment in the store, by result key and layer."""
        return intervention_summaries(self.store)

    def thumbnails(self, names: list[str], size: int) -> dict[str, np.ndarray | None]:
        """Images by their stored path, resized to ``size``; ``None`` for a missing or unreadable file."""
        return {
            n: load_image(self.images_dir / n, size) if self.images_dir else None
            for n in dict.fromkeys(names)
        }

    def result(self, filename: str) -> Any:
        """A parsed JSON results file by name (e.g. ``comprehensive_analysis_results.json``), or ``None``."""
        return self.results.get(filename)

    @property
    def layout(self) -> S.StoreLayout:
        """The store's layers, languages, samples and token counts."""
        return self.store.layout


def load_inputs(
    store_path: str | Path,
    *,
    saes_dir: str | Path | None = None,
    results_dir: str | Path | None = None,
    images_dir: str | Path | None = None,
    quota: int | None = None,
    inode_quota: int | None = None,
) -> ReportInputs:
    """Load what the report shows from a store and (optionally) its SAE and results folders.

    Parameters
    ----------
    store_path
        The activation store.
    saes_dir
        Folder of per-layer SAEs in any layout :func:`~sae_store.train.discovery.find_saes` reads (or a
        ``{L}`` pattern); missing folders mean "not trained yet". Default: ``saes/`` beside the store,
        if it exists. Layers encoded with SAEs elsewhere are shown from the features group's record.
    results_dir
        Folder of analysis/intervention JSON results (``sae-store analyze``/``intervene``).
        Default: ``results/`` beside the store, if it exists.
    images_dir
        Folder the store's image paths are relative to; default: the store's ``images_dir``.
    quota, inode_quota
        Byte and file quotas to compare the store's projected size with.
    """
    store = open_store(store_path)
    groups = subgroups(store)
    saes_path = Path(saes_dir) if saes_dir is not None else sibling_folder(store, "saes")
    if saes_path is not None and saes_path.exists() and not saes_path.is_dir():
        raise SaeStoreError(
            f"--saes {str(saes_path)!r} is not a folder; pass the folder given to `train --out`"
        )
    results_path = Path(results_dir) if results_dir is not None else sibling_folder(store, "results")
    if results_path is not None and results_path.exists() and not results_path.is_dir():
        raise SaeStoreError(
            f"--results {str(results_path)!r} is not a folder; pass the analyses' output folder"
        )
    results = {}
    if results_path is not None and results_path.is_dir():
        results = {
            name: read_json(results_path / name, what="results file ")
            for name in RESULT_FILES
            if (results_path / name).is_file()
        }
    images = images_dir if images_dir is not None else store.attrs.get("images_dir") or None
    names = subgroups(store, S.ANALYSIS)
    stale = {n: r for n in names if (r := stale_reason(store, f"{S.ANALYSIS}/{n}")) is not None}
    if "bias" in stale:  # its JSON file is as old as the group
        results.pop(BIAS_JSON, None)
    return ReportInputs(
        store=store,
        usage=store_usage(store),
        extraction=completion(store),
        features=completion(store, group=S.FEATURES) if S.FEATURES in groups else None,
        saes=sae_records(saes_path, encoded_saes(store)),
        saes_dir=saes_path,
        results=results,
        results_dir=results_path,
        analysis_groups=tuple(n for n in names if n not in stale),
        stale=stale,
        has_generation=S.GENERATION in groups,
        images_dir=Path(images) if images else None,
        quota=quota,
        inode_quota=inode_quota,
    )
