"""Loading everything the report shows: the store's own accounting, SAE folders and result files.

This is the report's only I/O on the input side. Every value is read as written by the step that
produced it (store flags and usage through the store API, SAE metrics from ``cfg.json`` and
``metrics.jsonl``, analysis results from their JSON files and the store's ``analysis`` group);
nothing is recomputed here. Inputs that do not exist yet are ``None``/empty, and the sections say
what to run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from sae_store.analyze.results import ANALYSIS_GROUP, read_analysis
from sae_store.analyze.run_bias import BIAS_JSON
from sae_store.analyze.visual import load_image
from sae_store.errors import DataError, SaeStoreError
from sae_store.store import ActivationStore, Completion, Usage, completion, open_store, store_usage

FEATURES_GROUP = "features"
#: JSON files of the results folder the report reads (everything else comes from the store's groups).
RESULT_FILES = (BIAS_JSON,)
GENERATION_GROUP = "generation"
_LAYER_DIR = re.compile(r"^layer_(\d+)$")


@dataclass
class SaeRecord:
    """One trained SAE folder as its training step left it."""

    layer: int
    path: Path
    cfg: dict[str, Any]
    """``cfg.json`` (architecture, sizes, provenance and final metrics)."""
    metrics: list[dict[str, Any]] = field(default_factory=list)
    """Rows of ``metrics.jsonl`` (one per logging step)."""
    quality: dict[str, Any] = field(default_factory=dict)
    """Held-out metrics (FVU, L0, dead fraction, tokens): saved by ``sae-store train`` in ``cfg.json``,
    or, for an SAE without them (pretrained), measured by ``sae-store encode``."""
    measured_by: str = "train"
    """Which step measured ``quality``: ``train`` or ``encode``."""


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
    """Sub-groups present in the store's ``analysis`` group."""
    has_generation: bool
    images_dir: Path | None
    quota: int | None = None
    inode_quota: int | None = None
    _analyses: dict[str, xr.Dataset] = field(default_factory=dict, repr=False)

    def analysis(self, name: str) -> xr.Dataset | None:
        """The store's ``analysis/<name>`` result (loaded once), or ``None`` if it was not written."""
        if name not in self.analysis_groups:
            return None
        if name not in self._analyses:
            self._analyses[name] = read_analysis(self.store, name)
        return self._analyses[name]

    def interventions(self) -> dict[str, dict[int, dict[str, Any]]]:
        """Summaries of every intervention experiment in the store, by result key and layer."""
        if "intervene" not in self.analysis_groups:
            return {}
        node = self.store.zarr_group(f"{ANALYSIS_GROUP}/intervene")
        out: dict[str, dict[int, dict[str, Any]]] = {}
        for key, group in sorted(node.groups()):
            for name, layer_group in group.groups():
                m = _LAYER_DIR.match(name)
                summary = layer_group.attrs.get("summary")
                if m is not None and isinstance(summary, str):
                    out.setdefault(key, {})[int(m.group(1))] = json.loads(summary)
        return {k: dict(sorted(v.items())) for k, v in out.items() if v}

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
    def layers(self) -> tuple[int, ...]:
        return self.store.layout.layers

    @property
    def languages(self) -> tuple[str, ...]:
        return self.store.layout.languages


def read_json(path: Path) -> Any:
    """Parse a JSON results file, naming the file when it is unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(
            f"results file {str(path)!r} is unreadable or not JSON ({e}); rerun the step that wrote it "
            "or remove the file"
        ) from e


def load_saes(saes_dir: Path) -> dict[int, SaeRecord]:
    """Every ``layer_<L>/cfg.json`` under ``saes_dir`` with its ``metrics.jsonl`` rows."""
    out: dict[int, SaeRecord] = {}
    for folder in sorted(p for p in saes_dir.iterdir() if p.is_dir()):
        m = _LAYER_DIR.match(folder.name)
        if m is None or not (folder / "cfg.json").is_file():
            continue
        metrics_file = folder / "metrics.jsonl"
        metrics = []
        if metrics_file.is_file():
            lines = metrics_file.read_text(encoding="utf-8").splitlines()
            metrics = [json.loads(line) for line in lines if line.strip()]
        cfg = read_json(folder / "cfg.json")
        val = ((cfg.get("sae_store") or {}).get("metrics") or {}).get("val") or {}
        out[int(m.group(1))] = SaeRecord(int(m.group(1)), folder, cfg, metrics, dict(val))
    return out


def add_encoded_saes(saes: dict[int, SaeRecord], encoded: dict[str, Any]) -> dict[int, SaeRecord]:
    """``saes`` completed from the features group's ``saes`` attribute (the SAE that ``encode`` used
    per layer): layers the SAE folder lacks (a pretrained layout) are added, and a folder's SAE
    without held-out metrics gets those ``encode`` measured when it is the same folder."""
    out = dict(saes)
    for key, rec in encoded.items():
        layer, quality = int(key), rec.get("quality") or {}
        have = out.get(layer)
        if have is None:
            cfg = {name: rec.get(name) for name in ("architecture", "format", "d_in", "d_sae")}
            out[layer] = SaeRecord(layer, Path(rec["folder"]), cfg, [], dict(quality), "encode")
        elif not have.quality and quality and have.path.resolve() == Path(rec["folder"]):
            out[layer] = SaeRecord(layer, have.path, have.cfg, have.metrics, dict(quality), "encode")
    return dict(sorted(out.items()))


def _encoded_saes(store: ActivationStore) -> dict[str, Any]:
    """The features group's ``saes`` attribute: per layer, the SAE ``encode`` used (and its quality)."""
    attrs: dict[str, Any] = dict(store.zarr_group(FEATURES_GROUP).attrs)
    return dict(attrs.get("saes") or {})


def _group_names(store: ActivationStore) -> tuple[set[str], tuple[str, ...]]:
    root = store.zarr_group()
    groups = {name for name, _ in root.groups()}
    analyses: tuple[str, ...] = ()
    if ANALYSIS_GROUP in groups:
        node = root[ANALYSIS_GROUP]
        assert isinstance(node, zarr.Group)
        analyses = tuple(sorted(name for name, _ in node.groups()))
    return groups, analyses


def sibling_folder(store: ActivationStore, name: str) -> Path | None:
    """``name`` beside the store, if it is a folder (the pipeline puts saes/ and results/ there)."""
    path = store.path.parent / name
    return path if path.is_dir() else None


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
        Folder of ``layer_<L>`` SAE folders (``sae-store train --out``); missing folders mean
        "not trained yet". Default: ``saes/`` beside the store, if it exists.
    results_dir
        Folder of analysis/intervention JSON results (``sae-store analyze``/``intervene``).
        Default: ``results/`` beside the store, if it exists.
    images_dir
        Folder the store's image paths are relative to; default: the store's ``images_dir``.
    quota, inode_quota
        Byte and file quotas to compare the store's projected size with.
    """
    store = open_store(store_path)
    groups, analyses = _group_names(store)
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
            name: read_json(results_path / name) for name in RESULT_FILES if (results_path / name).is_file()
        }
    images = images_dir if images_dir is not None else store.attrs.get("images_dir") or None
    return ReportInputs(
        store=store,
        usage=store_usage(store),
        extraction=completion(store),
        features=completion(store, group=FEATURES_GROUP) if FEATURES_GROUP in groups else None,
        saes=add_encoded_saes(
            load_saes(saes_path) if saes_path is not None and saes_path.is_dir() else {},
            _encoded_saes(store) if FEATURES_GROUP in groups else {},
        ),
        saes_dir=saes_path,
        results=results,
        results_dir=results_path,
        analysis_groups=analyses,
        has_generation=GENERATION_GROUP in groups,
        images_dir=Path(images) if images else None,
        quota=quota,
        inode_quota=inode_quota,
    )
