"""The data provider: token vectors of one layer streamed from the store as shuffled batches.

Selection: one layer, some languages (default all: one shared SAE per layer), some token roles
(default image and text; padding never), samples split into train and validation by sample (the
same images in every language), samples whose extraction failed left out. Reading: one shard file
per (language, shard block), of which only the sample chunks holding selected vectors are read and
decoded, each on one of ``read_threads`` threads. A chunk most of whose rows are selected (the
usual case: image and text tokens) is decoded straight into the shuffle buffer of
:class:`~sae_store.train.buffer.ShuffledBatches`, its unselected rows skipped by index; a sparser one
into that thread's reusable one-sample buffer, whose selected rows are copied once. Non-finite
vectors are skipped and counted; a sample the writer measured free of NaN/inf (its stored
``nonfinite`` count is 0) is not checked again. Validation samples are read one chunk each.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from sae_store.errors import DataError, IncompleteError
from sae_store.roles import TokenRole
from sae_store.store import ActivationStore, completion
from sae_store.store import schema as S
from sae_store.store.shards import OpenShard
from sae_store.train.buffer import BatchPosition, ShuffledBatches
from sae_store.train.config import DataConfig
from sae_store.train.placement import fits_device, units_per_round
from sae_store.train.resident import ResidentBatches, load_resident

log = logging.getLogger(__name__)


#: A sample chunk is decoded straight into the shuffle buffer when at least this share of its rows is
#: selected (the buffer then holds its unselected rows too); otherwise only its selected rows are copied.
IN_PLACE_SHARE = 0.875


class _Unit(NamedTuple):
    language: int
    start: int
    mask: np.ndarray
    """(samples, tokens) bool: the vectors of this block that are used."""
    samples: np.ndarray
    """The samples (relative to ``start``) holding used vectors."""
    slots: np.ndarray
    """Buffer rows each of ``samples`` takes: all its chunk's rows when decoded in place, else its
    used vectors."""
    checked: np.ndarray
    """Per sample of ``samples``: its vectors are checked for NaN/inf (its stored count is not 0)."""


def _unit(language: int, start: int, mask: np.ndarray, nonfinite: np.ndarray) -> _Unit:
    counts = mask.sum(axis=1)
    samples = np.flatnonzero(counts)
    in_place = counts[samples] >= IN_PLACE_SHARE * mask.shape[1]
    slots = np.where(in_place, mask.shape[1], counts[samples])
    return _Unit(language, start, mask, samples, slots, nonfinite[samples] != 0)


@dataclass
class DataSummary:
    """What the provider selected and how it will read it (recorded beside the SAE)."""

    layer: int
    languages: list[str]
    roles: list[str]
    train_samples: int
    val_samples: int
    train_tokens: int
    """Selected training vectors, before non-finite ones are skipped."""
    units: int
    """(language, shard block) pairs holding training vectors."""
    units_per_round: int
    in_memory: bool
    """Loaded once and kept (on the device when ``resident``, else in host RAM)."""
    resident: bool
    """The training data fits ``device_memory``: kept on the training device, batches drawn there."""
    device: str
    """The training device."""
    data_bytes: int
    """The selected training vectors' size in the store's precision (what the device would hold)."""


def missing_blocks(store: ActivationStore, layer: int, languages: list[str]) -> list[str]:
    """Human-readable ``language samples a:b`` items of ``layer`` whose blocks are not complete."""
    done = completion(store)
    li = store.layer_index(layer)
    out = []
    for lang in languages:
        gi = store.language_index(lang)
        todo = [f"{a}:{b}" for (a, b), d in zip(done.blocks, done.done[li, gi], strict=True) if d < 1]
        if todo:
            out.append(f"{lang} samples {', '.join(todo)}")
    return out


def validation_samples(n: int, fraction: float, seed: int) -> np.ndarray:
    """(n,) bool: a seeded random ``fraction`` of the samples (at least one, never all)."""
    n_val = min(round(fraction * n), n - 1)
    if fraction > 0 and n > 1:
        n_val = max(n_val, 1)
    is_val = np.zeros(n, dtype=bool)
    is_val[np.random.default_rng([seed, 7]).permutation(n)[:n_val]] = True
    return is_val


class StoreDataProvider:
    """Token vectors of ``config.layer`` from ``store``: training batches, validation batches, scale.

    Raises
    ------
    SaeStoreError
        The layer or a language is not in the store.
    IncompleteError
        Some shard blocks of the layer are not complete (listed in the message).
    DataError
        No vector is left after filtering by role and split.
    """

    def __init__(
        self, store: ActivationStore, config: DataConfig, device: torch.device | str = "cpu"
    ) -> None:
        store.require_arrays()
        self.config = config
        self.device = torch.device(device)
        self.layer_index = store.layer_index(config.layer)
        self.languages = list(config.languages or store.layout.languages)
        self.language_index = [store.language_index(lang) for lang in self.languages]
        missing = missing_blocks(store, config.layer, self.languages)
        if missing:
            raise IncompleteError(
                f"layer {config.layer} is not fully extracted: {'; '.join(missing)} are not complete; "
                "finish them with `sae-store extract` (see `sae-store status`) before training"
            )
        self.d_in = store.layout.hidden_size
        self._store = store
        self._acts = store.array(S.ACTIVATIONS)
        roles = np.asarray(store.array(S.TOKEN_ROLE)[...])[self.language_index]
        failed = np.asarray(store.array(S.EXTRACT_ERROR)[...])[self.language_index] != ""
        codes = [int(TokenRole[r.upper()]) for r in config.roles]
        use = np.isin(roles, codes) & ~failed[..., None]  # (language, sample, token)
        n = store.layout.n_samples
        is_val = validation_samples(n, config.val_fraction, config.seed)
        n_val = int(is_val.sum())
        self.val_samples = np.flatnonzero(is_val)
        self._val_use = use
        train_use = use & ~is_val[None, :, None]
        nonfinite = np.asarray(store.array(S.NONFINITE)[self.layer_index])
        self._units = []
        for j, gi in enumerate(self.language_index):
            for block in store.blocks:
                mask = train_use[j, block.start : block.stop]
                if mask.any():
                    self._units.append(_unit(gi, block.start, mask, nonfinite[gi, block.start : block.stop]))
        if not self._units:
            present = {TokenRole(int(c)).name.lower() for c in np.unique(roles)}
            raise DataError(
                f"no token vectors selected for layer {config.layer}, languages {self.languages}, roles "
                f"{list(config.roles)}: the store's token roles hold {sorted(present)} and "
                f"{int(failed.sum())} (language, sample) pairs failed extraction; choose other roles"
            )
        self._counts = counts = [int(u.mask.sum()) for u in self._units]
        self._sizes = [int(u.slots.sum()) for u in self._units]
        n_train = sum(counts)
        if n_train < config.batch_size:
            raise DataError(
                f"layer {config.layer} has {n_train} training vectors for roles {list(config.roles)}, "
                f"fewer than one batch of {config.batch_size}; lower the batch size"
            )
        self.nonfinite: dict[int, int] = {}
        self._scratch = threading.local()
        self._readers = ThreadPoolExecutor(config.read_threads, thread_name_prefix="sae-read")
        self.val_nonfinite = 0
        bf16 = self._acts.attrs.get("precision", "bf16") == "bf16"
        # resident on a GPU in the stored bf16; on a CPU in float32 (the same values): a CPU converts
        # bf16 slowly, so drawing a bf16 batch there costs ~6x a float32 one
        self._dtype = torch.bfloat16 if bf16 and self.device.type != "cpu" else torch.float32
        data_bytes = n_train * self.d_in * (2 if bf16 else 4)
        resident = fits_device(config, self.device, n_train=n_train, d_in=self.d_in, dtype=self._dtype,
                               unit_rows=max(self._sizes))  # fmt: skip
        per_round = len(counts) if resident else units_per_round(self._sizes, counts, store.layout, config)
        self.summary = DataSummary(
            layer=config.layer,
            languages=self.languages,
            roles=list(config.roles),
            train_samples=int(n - n_val),
            val_samples=int(n_val),
            train_tokens=n_train,
            units=len(counts),
            units_per_round=int(per_round),
            in_memory=per_round >= len(counts),
            resident=resident,
            device=str(self.device),
            data_bytes=data_bytes,
        )
        self._resident: Tensor | None = None

    @property
    def nonfinite_skipped(self) -> int:
        """Training vectors skipped so far because they held NaN or inf."""
        return sum(self.nonfinite.values())

    @staticmethod
    def _nonfinite_rows(x: np.ndarray) -> np.ndarray:
        """Indices of the rows of ``x`` holding a NaN or inf (usually none)."""
        # a NaN or inf anywhere makes the row sum non-finite; a float32 sum may also overflow on finite
        # rows, so only rows whose sum is not finite are checked value by value
        with np.errstate(over="ignore", invalid="ignore"):
            suspect = np.flatnonzero(~np.isfinite(x.sum(axis=1)))
        return suspect[~np.isfinite(x[suspect]).all(axis=1)] if len(suspect) else suspect

    def load_unit(self, i: int, out: np.ndarray) -> np.ndarray:
        """Write the training vectors of unit ``i`` (one shard block of one language) into ``out``
        (``self._sizes[i]`` rows) and return the indices of its finite selected rows, in order."""
        u = self._units[i]
        ends = np.cumsum(u.slots)
        with self._store.open_shard(
            self.config.layer, self._store.layout.languages[u.language], u.start
        ) as shard:
            rows = list(
                self._readers.map(
                    lambda s, end, slot, check: (
                        end - slot + self._load_sample(shard, int(s), u.mask[s], out[end - slot : end], check)
                    ),
                    u.samples,
                    ends,
                    u.slots,
                    u.checked,
                )
            )
        used = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
        self.nonfinite[i] = self._counts[i] - len(used)
        return used

    def _load_sample(
        self, shard: OpenShard, s: int, mask: np.ndarray, dst: np.ndarray, check: bool
    ) -> np.ndarray:
        """Decode sample chunk ``s`` of ``shard``: straight into ``dst`` when it has the chunk's rows,
        else into this thread's buffer and its rows ``mask`` copied to ``dst``; returns the rows of
        ``dst`` that hold its finite selected vectors."""
        rows = np.flatnonzero(mask)
        run = rows[-1] - rows[0] + 1 == len(rows)  # the usual case: one run of tokens
        if len(dst) == len(mask):
            shard.decode(s, dst)
        else:
            raw = getattr(self._scratch, "raw", None)
            if raw is None:
                raw = self._scratch.raw = np.empty((len(mask), self.d_in), dtype=np.float32)
            shard.decode(s, raw)
            if run:
                dst[...] = raw[rows[0] : rows[-1] + 1]
            else:
                np.take(raw, rows, axis=0, out=dst, mode="clip")  # "clip": no temporary copy
            rows, run = np.arange(len(rows)), True
        if not check:
            return rows
        picked = dst[rows[0] : rows[-1] + 1] if run else dst[rows]
        return np.delete(rows, self._nonfinite_rows(picked))

    def batches(
        self, *, scale: float = 1.0, position: dict[str, int] | None = None
    ) -> ShuffledBatches | ResidentBatches:
        """The endless stream of shuffled training batches, scaled by ``scale``, from ``position``.

        Resident data gives device tensors, else host tensors. A ``position`` (a stream's
        ``state_dict``) also fixes how many units were mixed per shuffle buffer, so a resumed stream
        draws the same batches whatever the memory budgets now allow: all of them (resident on the
        device if it fits, else in RAM), or that many per round, streamed.

        Raises
        ------
        DataError
            ``position`` is not one this version's streams return (a checkpoint of a version whose
            batches were drawn in another order).
        """
        fields = sorted([*BatchPosition._fields, "units_per_round"])
        if position is not None and sorted(position) != fields:
            raise DataError(
                f"the checkpoint's data position {position} is not one this sae-store resumes from (it "
                f"needs {fields}; it was saved by a version that drew batches in another order): start the "
                "run again without the checkpoint"
            )
        at, per_round = None, self.summary.units_per_round
        if position is not None:
            at = BatchPosition(position["epoch"], position["round"], position["offset"])
            per_round = int(position["units_per_round"])
        if per_round >= len(self._sizes) and self.summary.resident:
            if self._resident is None:
                self._resident = load_resident(
                    self.load_unit,
                    self._sizes,
                    self.d_in,
                    rows=self.summary.train_tokens,
                    dtype=self._dtype,
                    device=self.device,
                )
            c = self.config
            return ResidentBatches(
                self._resident, batch_size=c.batch_size, seed=c.seed, scale=scale, units=len(self._sizes),
                position=at,
            )  # fmt: skip
        return ShuffledBatches(
            self.load_unit,
            self._sizes,
            self.d_in,
            batch_size=self.config.batch_size,
            units_per_round=per_round,
            seed=self.config.seed,
            scale=scale,
            prefetch=self.config.prefetch,
            position=at,
        )

    def estimate_scale(self) -> float:
        """sqrt(d_in) / mean norm of up to ``norm_tokens`` training vectors from seeded random blocks."""
        norms: list[np.ndarray] = []
        count = 0
        for i in np.random.default_rng([self.config.seed, 3]).permutation(len(self._units)):
            x = np.empty((self._sizes[i], self.d_in), dtype=np.float32)
            x = x[self.load_unit(int(i), x)]
            norms.append(np.linalg.norm(x.astype(np.float64), axis=1))
            count += len(x)
            if count >= self.config.norm_tokens:
                break
        if not count:
            raise DataError(
                f"cannot normalise layer {self.config.layer}: no finite vector among its selected tokens "
                "(every activation is NaN or infinite); re-extract the layer (see `sae-store status`)"
            )
        mean = float(np.concatenate(norms)[: self.config.norm_tokens].mean())
        if not math.isfinite(mean) or mean <= 0:
            raise DataError(
                f"cannot normalise layer {self.config.layer}: the mean norm of its selected vectors "
                f"is {mean!r}"
            )
        return math.sqrt(self.d_in) / mean

    def validation_batches(self, *, scale: float = 1.0) -> Iterator[Tensor]:
        """Held-out vectors in batches (sample by sample, at most ``max_eval_tokens``), times ``scale``."""
        pending: list[np.ndarray] = []
        n_pending = total = 0
        cap, bs = self.config.max_eval_tokens, self.config.batch_size
        for j, gi in enumerate(self.language_index):
            for s in self.val_samples:
                mask = self._val_use[j, s]
                if total >= cap:
                    break
                if not mask.any():
                    continue
                sample = np.asarray(self._acts[self.layer_index, gi, int(s)], dtype=np.float32)
                x = sample[mask]
                bad = self._nonfinite_rows(x)
                if len(bad):
                    x = np.delete(x, bad, axis=0)
                    self.val_nonfinite += len(bad)
                x = x[: cap - total]
                pending.append(x)
                n_pending += len(x)
                total += len(x)
                while n_pending >= bs:
                    joined = np.concatenate(pending)
                    yield torch.from_numpy(joined[:bs] * np.float32(scale))
                    pending, n_pending = [joined[bs:]], n_pending - bs
        if n_pending:
            yield torch.from_numpy(np.concatenate(pending) * np.float32(scale))

    def describe(self) -> dict[str, Any]:
        """The summary plus the non-finite counts, as JSON-ready values."""
        return {
            **asdict(self.summary),
            "nonfinite_skipped": self.nonfinite_skipped,
            "val_nonfinite_skipped": self.val_nonfinite,
        }
