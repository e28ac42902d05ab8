"""The background writer: compresses and writes whole shard blocks while the model computes the next.

A block (one shard block of samples, one language, all its layers) is written in this order: the
per-token metadata (while the activations are encoded), the activations of every layer, then per
layer the statistics and, last, the ``complete`` flags. Every file is written atomically, so a
process killed at any point leaves no flag without its data, and a rerun redoes exactly the blocks
that are not flagged.

The activations are encoded with one task per sample chunk on a pool of ``threads`` threads
(:mod:`sae_store.store.shards`; Blosc and Zstd release the GIL). A block the model already rounded
to bf16 (the usual case: rounding on the model's device) is measured (largest |x|, NaN/inf count per
sample) by the writer thread while the pool encodes it; otherwise a first pass on the pool rounds
each chunk in place, fused with its statistics, before the encoding. Then the writer thread writes
the small arrays and each layer's shard file (its encoded chunks, index and checksum in one gathered
write, no joined copy) as soon as its chunks are encoded. Nothing is written before the statistics
are known, so a block with NaN/inf is refused before any of its files is written.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from sae_store.errors import ConfigError, SaeStoreError
from sae_store.extract.block import BlockData
from sae_store.extract.config import OnNonfinite
from sae_store.faults import kill_point
from sae_store.store import ActivationStore
from sae_store.store import schema as S
from sae_store.store.codecs import round_to_bf16_
from sae_store.store.config import Precision
from sae_store.store.shards import Encoded

#: Largest finite float16 value; Gemma 3 activations can exceed it.
FLOAT16_MAX = 65504.0


class Float16OverflowWarning(UserWarning):
    """Stored activations exceed float16's range: never cast them to float16."""


class NonFiniteError(SaeStoreError):
    """The model produced NaN or inf activations and the run was asked to stop on them."""


@dataclass
class WriterStats:
    """Running totals of what the writer has stored (read by the progress display)."""

    blocks: int = 0
    bytes: int = 0
    """Activation bytes (float32) encoded and written."""
    seconds: float = 0.0
    nonfinite: int = 0
    float16_overflow: dict[int, float] = field(default_factory=dict)
    """Largest |x| per layer whose values exceed float16's range."""


def sample_statistics(values: np.ndarray) -> tuple[float, int]:
    """The largest finite |x| (NaN if none) and the count of NaN/inf of one sample's real tokens."""
    hi, lo = values.max(initial=-np.inf), values.min(initial=np.inf)
    if np.isfinite(hi) and np.isfinite(lo):  # the usual case: two passes, no temporary arrays
        return float(max(hi, -lo)), 0
    finite = np.isfinite(values)
    top = np.abs(values[finite]).max(initial=-np.inf)
    return (float(top) if np.isfinite(top) else np.nan), int(values.size - np.count_nonzero(finite))


def block_statistics(
    values: np.ndarray, n_tokens: np.ndarray, ok: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the largest finite |x| and the count of NaN/inf over its real tokens.

    ``values`` is ``[sample, token, hidden]``; failed samples (``~ok``) get NaN and -1 (not written).
    """
    max_abs = np.full(len(n_tokens), np.nan, np.float32)
    nonfinite = np.full(len(n_tokens), -1, np.int32)
    for s in np.flatnonzero(ok):
        max_abs[s], nonfinite[s] = sample_statistics(values[s, : n_tokens[s]])
    return max_abs, nonfinite


class BlockWriter:
    """Writes :class:`BlockData` in a background thread; at most ``pending`` blocks wait or are written.

    :meth:`submit` blocks while the writer is busy, so memory holds at most ``pending + 1`` blocks
    (those handed over and the one being computed). The first write error stops the writer: later
    blocks are dropped unwritten and the error is raised by the next :meth:`submit` or :meth:`close`.
    ``threads`` threads round, measure and encode the activations (see the module docstring).
    """

    def __init__(
        self,
        store: ActivationStore,
        *,
        precision: Precision,
        on_nonfinite: OnNonfinite = "error",
        pending: int = 1,
        threads: int = 1,
    ) -> None:
        if not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"writer threads must be a positive integer, got {threads!r}")
        self.store = store
        self.precision = precision
        self.on_nonfinite = on_nonfinite
        self.stats = WriterStats()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="sae-store-encode")
        self._slots = threading.Semaphore(pending)
        self._queue: queue.Queue[BlockData | None] = queue.Queue()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="sae-store-writer", daemon=True)
        self._thread.start()

    def submit(self, data: BlockData) -> None:
        """Hand a block over; waits while ``pending`` blocks are in the writer."""
        while not self._slots.acquire(timeout=0.1):
            self._raise_if_failed()
        self._raise_if_failed()
        self._queue.put(data)

    def close(self) -> None:
        """Wait until every submitted block is written; raise the writer's error if it had one."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._pool.shutdown()
        self._raise_if_failed()

    def __enter__(self) -> BlockWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.close()
        elif self._thread.is_alive():
            # Blocks already handed over are whole and valid: let them finish, then stop.
            self._queue.put(None)
            self._thread.join()
        self._pool.shutdown()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            try:
                if self._error is None:
                    self._write(data)
            except BaseException as e:
                self._error = e if isinstance(e, SaeStoreError) else _write_failed(data, e)
            finally:
                self._slots.release()

    def _write(self, data: BlockData) -> None:
        started = time.perf_counter()
        block, lang, ok = data.block, data.language, data.ok
        max_abs = np.full((len(data.layers), len(ok)), np.nan, np.float32)
        nonfinite = np.full((len(data.layers), len(ok)), -1, np.int32)
        rounding = self.precision == "bf16" and not data.bf16_exact
        acts = data.activations

        def measure(k: int, s: int) -> None:
            if ok[s]:
                max_abs[k, s], nonfinite[k, s] = sample_statistics(acts[k, s, : data.n_tokens[s]])

        def prepare(k: int, s: int) -> None:
            round_to_bf16_(acts[k, s])
            measure(k, s)

        cells = [(k, s) for k in range(len(data.layers)) for s in range(len(ok))]
        if rounding:  # the rounding must be done before encoding: both passes on the pool
            list(self._pool.map(prepare, *zip(*cells, strict=True)))
        encode = self.store.activation_codec.encode_chunk
        encoded: list[list[Future[Encoded | None]]] = [
            [self._pool.submit(encode, acts[k, s]) for s in range(len(ok))] for k in range(len(data.layers))
        ]
        try:
            if not rounding:  # measured by this thread while the pool encodes
                for k, s in cells:
                    measure(k, s)
            for k, layer in enumerate(data.layers):
                if self.on_nonfinite == "error" and nonfinite[k].max(initial=0) > 0:
                    bad = [data.sample_ids[i] for i in np.flatnonzero(nonfinite[k] > 0)]
                    raise NonFiniteError(
                        f"layer {layer}, language {lang!r}: {int(nonfinite[k][nonfinite[k] > 0].sum())} "
                        f"NaN/inf values in samples {bad[:5]} (block {block.start}:{block.stop}); nothing of "
                        "this block was written. Run the model in float32 (--dtype float32), or keep the "
                        "values and count them with --on-nonfinite record"
                    )
            # Order matters: all data first, the completion flags last (see the module docstring).
            self._write_activations(data, encoded)
        finally:  # after a refusal or a failed write, drop the encodes not started yet
            for future in (f for futures in encoded for f in futures):
                future.cancel()
        runs = self._consecutive_runs(data.layers)
        for run in runs:
            self._write_layers(S.MAX_ABS, max_abs[run], data, run)
            self._write_layers(S.NONFINITE, nonfinite[run], data, run)
        kill_point("extract.statistics_written")
        flags = np.broadcast_to(ok, max_abs.shape)
        for run in runs:
            self._write_layers(S.COMPLETE, flags[run], data, run)
        kill_point("extract.flags_written")
        with self._lock:
            self.stats.blocks += 1
            self.stats.bytes += data.activations.nbytes
            self.stats.seconds += time.perf_counter() - started
            self.stats.nonfinite += int(nonfinite[nonfinite > 0].sum())
            for k, layer in enumerate(data.layers):
                top = float(np.nanmax(max_abs[k], initial=0.0))
                if top > FLOAT16_MAX:
                    self.stats.float16_overflow[layer] = max(top, self.stats.float16_overflow.get(layer, 0.0))

    def _write_activations(self, data: BlockData, encoded: list[list[Future[Encoded | None]]]) -> None:
        """Write the per-token metadata while the pool encodes, then each layer's shard once its
        chunks (``encoded``, per layer and sample) are done."""
        block, lang = data.block, data.language
        for name, values in (
            (S.INPUT_IDS, data.input_ids),
            (S.TOKEN_ROLE, data.token_role),
            (S.N_TOKENS, data.n_tokens),
            (S.EXTRACT_ERROR, data.errors),
            (S.EXTRACT_STATUS, (np.asarray(data.errors) != "").astype(np.int8)),
        ):
            self.store.write(name, values, start=block.start, language=lang)
        kill_point("extract.metadata_written")
        for k, layer in enumerate(data.layers):
            chunks = [f.result() for f in encoded[k]]
            self.store.write_activation_shard(layer, lang, block.start, chunks)
            encoded[k] = []  # free the written bytes now, while the pool still encodes
        kill_point("extract.activations_written")

    def _consecutive_runs(self, layers: tuple[int, ...]) -> list[slice]:
        """Split ``layers`` into runs that are consecutive in the store: one zarr call writes each run
        of the small per-layer arrays (one call per layer made small blocks overhead-bound)."""
        rows = [self.store.layer_index(layer) for layer in layers]
        runs, first = [], 0
        for k in range(1, len(rows) + 1):
            if k == len(rows) or rows[k] != rows[k - 1] + 1:
                runs.append(slice(first, k))
                first = k
        return runs

    def _write_layers(self, name: str, values: np.ndarray, data: BlockData, run: slice) -> None:
        self.store.write(
            name, values, start=data.block.start, layers=data.layers[run], language=data.language
        )


def _write_failed(data: BlockData, error: BaseException) -> SaeStoreError:
    err = SaeStoreError(
        f"writing samples {data.block.start}:{data.block.stop} of language {data.language!r} failed: "
        f"{type(error).__name__}: {error}. No completion flag was set for them, so a rerun redoes them; "
        "check free space and quota (`sae-store du`) first"
    )
    err.__cause__ = error
    return err
