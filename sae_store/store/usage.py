"""Storage accounting: bytes, files (inodes), compression, projections and quotas (``sae-store du``)."""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from sae_store.store import schema as S
from sae_store.store.core import ActivationStore
from sae_store.units import format_bytes


@dataclass
class VariableUsage:
    logical_bytes: int = 0
    disk_bytes: int = 0
    files: int = 0


@dataclass
class Usage:
    """What ``sae-store du`` reports. All byte counts are exact sums over real files."""

    path: str
    logical_bytes: int
    disk_bytes: int
    files: int
    activation_values: int
    activation_disk_bytes: int
    fraction_complete: float
    projected_disk_bytes: int
    projected_files: int
    free_bytes: int
    variables: dict[str, VariableUsage] = field(default_factory=dict)
    projected_files_by_group: dict[str, int] = field(default_factory=dict)
    """Projected files of each top-level group (``(root)``: the root's own arrays and metadata), e.g.
    ``features``, ``generation``, ``analysis``; they add up to :attr:`projected_files`."""
    activations_by_layer: dict[str, int] = field(default_factory=dict)
    activations_by_language: dict[str, int] = field(default_factory=dict)

    @property
    def compression_ratio(self) -> float:
        written = self.activation_values * self.fraction_complete * 4
        return written / self.activation_disk_bytes if self.activation_disk_bytes else float("nan")

    @property
    def bytes_per_value(self) -> float:
        written = self.activation_values * self.fraction_complete
        return self.activation_disk_bytes / written if written else float("nan")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["compression_ratio"] = self.compression_ratio
        out["bytes_per_value"] = self.bytes_per_value
        return out


def _variable_key(parts: tuple[str, ...], root_arrays: set[str]) -> str:
    """Root arrays by name; arrays of sub-groups by their first two path parts (``features/feature_mean``)."""
    return parts[0] if parts[0] in root_arrays or len(parts) == 1 else "/".join(parts[:2])


def _final_files(arr: zarr.Array, files_now: int, samples_per_shard: int) -> int:
    """Chunk (or shard) files of ``arr`` once the store is finished.

    Arrays written block by block by array tasks (a file per shard block of samples) get one file
    per cell of their grid. The others are written whole by one command (coordinates and labels
    by ``init``, results by ``analyze``), so they keep the files they have, as do the arrays written
    only where a sample failed (``extract_error``, ``extract_status``): zarr writes no file for a
    chunk that holds only the fill value.
    """
    dims = tuple(arr.metadata.dimension_names or ())  # type: ignore[union-attr]
    per_file = arr.shards or arr.chunks
    if arr.basename in S.SPARSE_VARIABLES or S.SAMPLE not in dims:
        return files_now
    if per_file[dims.index(S.SAMPLE)] != samples_per_shard:
        return files_now
    return int(np.prod([-(-n // c) for n, c in zip(arr.shape, per_file, strict=True)]))


def _array_files(folder: Path) -> int:
    """Chunk files of the array in ``folder`` (its ``zarr.json`` and temporary files left out)."""
    chunks = folder / "c"
    return (
        sum(1 for f in chunks.rglob("*") if f.is_file() and not f.name.endswith(".partial"))
        if chunks.is_dir()
        else 0
    )


def store_usage(store: ActivationStore) -> Usage:
    """Measure a store on disk and project its final size and file count.

    Bytes are projected from the fraction of activations written; files from every array's chunk
    grid (one file per chunk or shard, plus each array's and group's ``zarr.json``), so the
    projection holds for a store that is empty, partly or completely written.
    """
    root = store.path
    variables: dict[str, VariableUsage] = defaultdict(VariableUsage)
    by_layer: dict[str, int] = defaultdict(int)
    by_lang: dict[str, int] = defaultdict(int)
    total_bytes = total_files = 0
    layers, languages = store.layout.layers, store.layout.languages
    group = store.zarr_group()
    root_arrays = {name for name, _ in group.arrays()}
    for dirpath, _dirs, files in os.walk(root):
        rel = Path(dirpath).relative_to(root).parts
        for name in files:
            size = (Path(dirpath) / name).stat().st_size
            total_bytes += size
            total_files += 1
            var = _variable_key(rel, root_arrays) if rel else "(metadata)"
            variables[var].disk_bytes += size
            variables[var].files += 1
            # chunk keys of activations: activations/c/<layer>/<language>/<shard>/0/0
            if rel[:2] == (S.ACTIVATIONS, "c") and len(rel) >= 4:
                by_layer[str(layers[int(rel[2])])] += size
                by_lang[languages[int(rel[3])]] += size
    by_group: dict[str, int] = defaultdict(int)
    by_group[""] = 1  # the root's zarr.json
    for name, node in group.members(max_depth=None):
        top = name.split("/")[0] if name.split("/")[0] not in root_arrays else ""
        if isinstance(node, zarr.Array):
            key = _variable_key(tuple(name.split("/")), root_arrays)
            variables[key].logical_bytes += int(np.prod(node.shape)) * node.dtype.itemsize
            chunk_files = _array_files(root / name)
            by_group[top] += 1 + _final_files(node, chunk_files, store.layout.samples_per_shard)
        else:
            by_group[top] += 1
    projected_files = sum(by_group.values())
    act = variables[S.ACTIVATIONS]
    flags = store.read_flags()
    done = float(flags.mean()) if flags.size else 0.0
    act_values = int(np.prod(store.array(S.ACTIVATIONS).shape))
    other_bytes = total_bytes - act.disk_bytes
    # nothing written yet: assume ~1.5 bytes per value
    projected_bytes = other_bytes + (int(act.disk_bytes / done) if done > 0 else int(act_values * 1.5))
    return Usage(
        path=str(root),
        logical_bytes=sum(v.logical_bytes for v in variables.values()),
        disk_bytes=total_bytes,
        files=total_files,
        activation_values=act_values,
        activation_disk_bytes=act.disk_bytes,
        fraction_complete=done,
        projected_disk_bytes=projected_bytes,
        projected_files=projected_files,
        free_bytes=shutil.disk_usage(root).free,
        variables=dict(variables),
        projected_files_by_group={k or "(root)": v for k, v in sorted(by_group.items())},
        activations_by_layer=dict(by_layer),
        activations_by_language=dict(by_lang),
    )


def quota_problems(usage: Usage, *, quota: int | None = None, inode_quota: int | None = None) -> list[str]:
    """Reasons the projected store would not fit; empty when it fits."""
    problems = []
    if quota is not None and usage.projected_disk_bytes > quota:
        problems.append(
            f"projected size {format_bytes(usage.projected_disk_bytes)} "
            f"exceeds the quota {format_bytes(quota)}"
        )
    if inode_quota is not None and usage.projected_files > inode_quota:
        problems.append(
            f"projected file count {usage.projected_files:,} exceeds the inode quota {inode_quota:,}"
        )
    remaining = usage.projected_disk_bytes - usage.disk_bytes
    if remaining > usage.free_bytes:
        problems.append(
            f"{format_bytes(remaining)} still to write but only {format_bytes(usage.free_bytes)} "
            "free on that filesystem"
        )
    return problems


def render_usage(usage: Usage) -> str:
    """Human-readable report of :func:`store_usage`."""
    lines = [
        f"store            {usage.path}",
        f"complete         {usage.fraction_complete:.1%}",
        f"on disk          {format_bytes(usage.disk_bytes)} in {usage.files:,} files",
        f"logical (raw)    {format_bytes(usage.logical_bytes)}",
        f"activations      {format_bytes(usage.activation_disk_bytes)}, "
        f"{usage.bytes_per_value:.3f} bytes/value, compression {usage.compression_ratio:.2f}x vs float32",
        f"projected final  {format_bytes(usage.projected_disk_bytes)} in {usage.projected_files:,} files ("
        + ", ".join(f"{k} {v:,}" for k, v in usage.projected_files_by_group.items())
        + ")",
        f"free space       {format_bytes(usage.free_bytes)}",
        "",
        f"{'variable':<24}{'on disk':>12}{'files':>8}{'logical':>12}",
    ]
    for name, v in sorted(usage.variables.items(), key=lambda kv: -kv[1].disk_bytes):
        lines.append(
            f"{name:<24}{format_bytes(v.disk_bytes):>12}{v.files:>8}{format_bytes(v.logical_bytes):>12}"
        )
    if usage.activations_by_layer:
        lines += [
            "",
            "activations per layer: "
            + ", ".join(
                f"{k}: {format_bytes(v)}"
                for k, v in sorted(usage.activations_by_layer.items(), key=lambda kv: int(kv[0]))
            ),
        ]
        lines.append(
            "activations per language: "
            + ", ".join(f"{k}: {format_bytes(v)}" for k, v in usage.activations_by_language.items())
        )
    return "\n".join(lines)
