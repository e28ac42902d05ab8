"""The stored tokens ``evaluate`` measures: which samples, and their vectors streamed in batches.

Samples are those ``sae-store train`` holds out (the same split for every SAE set, so none of the
store's own SAEs has seen them) or all; a (language, sample) whose extraction failed is left out, and
so are vectors holding NaN or inf (counted). Tokens of the image, text and special roles are read,
never padding. A batch is up to :data:`BATCH_SAMPLES` samples of one language (SAEBench's 16 prompts
per batch, which its legacy explained variance depends on); each sample's chunk is decoded from its
shard on a pool of threads, the next batch while the caller works on this one, so memory stays at
two batches whatever the store's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from sae_store.device import available_cores
from sae_store.errors import IncompleteError
from sae_store.evaluate.config import EvaluateConfig
from sae_store.roles import TokenRole
from sae_store.store import ActivationStore
from sae_store.store import schema as S
from sae_store.train.data import missing_blocks, validation_samples

#: Samples per batch (SAEBench's ``batch_size_prompts``).
BATCH_SAMPLES = 16
#: Token roles read, in the order of their cell index in a :class:`TokenBatch`.
CELL_ROLES = (TokenRole.IMAGE, TokenRole.TEXT, TokenRole.SPECIAL)


def evaluated_samples(store: ActivationStore, config: EvaluateConfig) -> np.ndarray:
    """Indices of the samples evaluated, in store order (``samples``, ``val_fraction``, ``seed`` and
    ``max_samples`` of ``config``)."""
    n = store.layout.n_samples
    if config.samples == "held-out":
        index = np.flatnonzero(validation_samples(n, config.val_fraction, config.seed))
    else:
        index = np.arange(n)
    return index[: config.max_samples] if config.max_samples else index


class TokenBatch(NamedTuple):
    """Stored vectors of up to :data:`BATCH_SAMPLES` samples of one language."""

    language: int
    """Position of the language in the store."""
    x: np.ndarray
    """[n, hidden] float32, the finite vectors of the selected roles."""
    cell: np.ndarray
    """[n] int64: 0 image, 1 text, 2 special (:data:`CELL_ROLES`)."""
    row: np.ndarray
    """[n] int64: the position of each vector's sample in the evaluated samples."""


class StoredTokens:
    """The stored tokens of one layer at the evaluated ``samples``.

    Raises
    ------
    IncompleteError
        The layer is not fully extracted.
    """

    def __init__(self, store: ActivationStore, layer: int, samples: np.ndarray) -> None:
        missing = missing_blocks(store, layer, list(store.layout.languages))
        if missing:
            raise IncompleteError(
                f"layer {layer} is not fully extracted: {'; '.join(missing)} are not complete; finish them "
                "with `sae-store extract` (see `sae-store status`) before evaluating"
            )
        self.store, self.layer, self.samples = store, layer, samples
        roles = np.asarray(store.array(S.TOKEN_ROLE)[...])[:, samples]
        failed = np.asarray(store.array(S.EXTRACT_ERROR)[...])[:, samples] != ""
        cells = np.full(roles.shape, -1, dtype=np.int64)
        for i, role in enumerate(CELL_ROLES):
            cells[roles == int(role)] = i
        cells[failed] = -1
        self.cells = cells
        """[language, evaluated sample, token]: the cell of each position, -1 where it is not read."""
        self.nonfinite = 0
        """Vectors skipped so far because they held NaN or inf."""

    def tokens(self, language: int | None = None) -> np.ndarray:
        """Vectors per cell that will be read (before non-finite ones are dropped), of one language or all."""
        cells = self.cells if language is None else self.cells[language]
        return np.bincount(cells[cells >= 0], minlength=len(CELL_ROLES))

    def batches(self) -> Iterator[TokenBatch]:
        """Every language's samples in batches, read one batch ahead."""
        plan = [
            (g, rows[i : i + BATCH_SAMPLES])
            for g in range(len(self.store.layout.languages))
            for rows in [np.flatnonzero((self.cells[g] >= 0).any(axis=1))]
            for i in range(0, len(rows), BATCH_SAMPLES)
        ]
        with (
            ThreadPoolExecutor(min(available_cores(), 8), thread_name_prefix="evaluate-read") as pool,
            ThreadPoolExecutor(1, thread_name_prefix="evaluate-ahead") as ahead,
        ):
            pending = [ahead.submit(self._read, *plan[0], pool)] if plan else []
            for k in range(len(plan)):
                if k + 1 < len(plan):
                    pending.append(ahead.submit(self._read, *plan[k + 1], pool))
                yield pending.pop(0).result()

    def _read(self, g: int, rows: np.ndarray, pool: ThreadPoolExecutor) -> TokenBatch:
        lay = self.store.layout
        language = lay.languages[g]
        raw = np.empty((len(rows), lay.max_tokens, lay.hidden_size), dtype=np.float32)
        per_shard = lay.samples_per_shard
        by_block: dict[int, list[int]] = {}
        for j, r in enumerate(rows):
            by_block.setdefault(int(self.samples[r]) // per_shard, []).append(j)
        for block, js in by_block.items():
            with self.store.open_shard(self.layer, language, block * per_shard) as shard:
                list(pool.map(lambda j: shard.decode(int(self.samples[rows[j]]) % per_shard, raw[j]), js))
        cells = self.cells[g, rows]
        use = cells >= 0
        x = raw[use]
        finite = np.isfinite(x).all(axis=1)
        self.nonfinite += int((~finite).sum())
        row = np.broadcast_to(rows[:, None], cells.shape)[use]
        return TokenBatch(g, x[finite], cells[use][finite], row[finite])
