"""Before an extraction starts: will what it writes fit on the filesystem and in the quota?"""

from __future__ import annotations

import errno
import math
import os
import shutil
from typing import NamedTuple

from sae_store.errors import SaeStoreError
from sae_store.store import ActivationStore, store_usage
from sae_store.store import schema as S
from sae_store.store.explain import explain_os_error
from sae_store.units import format_bytes

# Bytes per stored value assumed before anything is written: bf16-exact float32 with byte shuffle
# compresses to ~1.5 (BENCHMARKS.md); full float32 mantissas compress little. Both err high.
_ASSUMED_BYTES_PER_VALUE = {"bf16": 2.0, "fp32": 4.0}


class Projection(NamedTuple):
    """What a task is expected to add to the store."""

    values: int
    """Activation values it will write."""
    bytes_per_value: float
    """Measured on the store's written data when there is some, assumed otherwise."""
    bytes: int
    store_bytes: int
    """The store's size on disk now."""
    free_bytes: int


def project(store: ActivationStore, n_values: int) -> Projection:
    """Project the bytes of writing ``n_values`` activation values into ``store``."""
    usage = store_usage(store)
    measured = usage.bytes_per_value
    if usage.activation_disk_bytes and math.isfinite(measured):
        per_value = measured
    else:
        compressed = store.config().get("store", {}).get("compressor", "blosc-zstd") != "none"
        precision = str(store.zarr_group()["activations"].attrs.get("precision", "fp32"))
        per_value = _ASSUMED_BYTES_PER_VALUE.get(precision, 4.0) if compressed else 4.0
    return Projection(
        values=n_values,
        bytes_per_value=per_value,
        bytes=int(n_values * per_value),
        store_bytes=usage.disk_bytes,
        free_bytes=shutil.disk_usage(store.path).free,
    )


def check_fits(projection: Projection, *, quota: int | None = None) -> None:
    """Refuse to start when the projected writes exceed the free space or the quota.

    ``quota`` bounds the store's total size (what it holds now plus what this task adds).
    """
    need = projection.bytes
    how = (
        f"{projection.values:,} values x {projection.bytes_per_value:.2f} bytes/value = {format_bytes(need)}"
    )
    if need > projection.free_bytes:
        raise SaeStoreError(
            f"this task would write about {how}, but only {format_bytes(projection.free_bytes)} are free on "
            "the store's filesystem; free space, extract fewer layers (--layers) or samples per task, "
            "or move the store"
        )
    if quota is not None and projection.store_bytes + need > quota:
        raise SaeStoreError(
            f"the store holds {format_bytes(projection.store_bytes)} and this task would add about {how}, "
            f"more than the quota {format_bytes(quota)}; raise --quota, extract fewer layers (--layers), "
            "or split the work over several stores"
        )


def check_writable(store: ActivationStore) -> None:
    """Refuse at once, before a model is loaded, if this user cannot write the store's folders.

    Raises
    ------
    SaeStoreError
        Naming the folder, who owns it and who may write it.
    """
    for folder in (store.path, store.path / S.ACTIVATIONS, store.path / S.COMPLETE):
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))
            raise SaeStoreError(explain_os_error(denied))
