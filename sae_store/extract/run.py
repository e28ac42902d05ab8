"""Extraction: the model, its hooks and the store's writer composed into one resumable task."""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sae_store.data.images import load_images
from sae_store.device import available_cores
from sae_store.errors import SaeStoreError
from sae_store.extract.block import compute_block
from sae_store.extract.config import ExtractConfig
from sae_store.extract.model_info import check_identity, check_prompts
from sae_store.extract.preflight import check_fits, check_writable, project
from sae_store.extract.writer import FLOAT16_MAX, BlockWriter, Float16OverflowWarning
from sae_store.models.loader import LoadedModel, load_model, model_identity
from sae_store.progress import on_terminal, progress_bar
from sae_store.store import ActivationStore, Block, open_store, task_blocks
from sae_store.store import schema as S
from sae_store.store.blocks import check_aligned
from sae_store.store.config import Precision
from sae_store.store.lock import register_extraction, release_dead_claims
from sae_store.units import format_bytes

log = logging.getLogger(__name__)


class WorkItem(NamedTuple):
    """One language of one shard block, and the layers of it still to write."""

    block: Block
    language: str
    layers: tuple[int, ...]


class Plan(NamedTuple):
    """What one task owns and what of it is left to do."""

    layers: tuple[int, ...]
    languages: tuple[str, ...]
    blocks: list[Block]
    work: list[WorkItem]


@dataclass
class ExtractSummary:
    """What an extraction task did."""

    blocks_planned: int
    """(shard block, language) pairs this task owns."""
    blocks_skipped: int
    """Of those, already complete for every requested layer."""
    blocks_written: int = 0
    samples: int = 0
    """Samples run through the model (counted once per language)."""
    tokens: int = 0
    bytes_written: int = 0
    """Activation bytes (as float32) encoded and written."""
    seconds: float = 0.0
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    """(sample id, language, reason) of samples whose image could not be used."""
    nonfinite: int = 0
    float16_overflow: dict[int, float] = field(default_factory=dict)
    """Largest |x| of each layer whose values exceed float16's range."""

    @property
    def ok(self) -> bool:
        return not self.failed

    def render(self) -> str:
        rate = self.samples / self.seconds if self.seconds else 0.0
        lines = [
            f"wrote {self.blocks_written} of {self.blocks_planned} blocks ({self.blocks_skipped} already "
            f"complete): {self.samples} samples, {self.tokens:,} tokens, {format_bytes(self.bytes_written)} "
            f"of activations in {self.seconds:.1f} s ({rate:.2f} samples/s)",
        ]
        if self.nonfinite:
            lines.append(f"{self.nonfinite} NaN/inf values recorded (see the 'nonfinite' variable)")
        for layer, top in sorted(self.float16_overflow.items()):
            lines.append(f"layer {layer}: |x| up to {top:.4g} exceeds float16's {FLOAT16_MAX:.0f}")
        if self.failed:
            n = len({sid for sid, _, _ in self.failed})
            lines.append(f"{n} sample(s) FAILED and have no activations (see 'extract_error'):")
            lines += [f"  {sid} [{lang}]: {reason}" for sid, lang, reason in self.failed[:20]]
            if len(self.failed) > 20:
                lines.append(f"  ... and {len(self.failed) - 20} more")
        return "\n".join(lines)


def plan(store: ActivationStore, config: ExtractConfig) -> Plan:
    """The blocks this task owns and the (block, language, layers) still to write in them.

    Raises
    ------
    SaeStoreError
        For layers or languages the store does not hold, a sample range not made of whole shard
        blocks, or a task index out of range.
    """
    layers = config.layers or store.layout.layers
    languages = config.languages or store.layout.languages
    rows = [store.layer_index(layer) for layer in layers]
    cols = [store.language_index(lang) for lang in languages]
    blocks = store.blocks
    if config.sample_range is not None:
        start, stop = config.sample_range
        check_aligned(start, stop, store.layout.n_samples, store.layout.samples_per_shard)
        blocks = [b for b in blocks if start <= b.start and b.stop <= stop]
    blocks = task_blocks(blocks, config.task_index, config.task_count)
    flags = store.read_flags()
    work = []
    for block in blocks:
        for lang, j in zip(languages, cols, strict=True):
            todo = tuple(
                layer
                for layer, i in zip(layers, rows, strict=True)
                if not flags[i, j, block.start : block.stop].all()
            )
            if todo:
                work.append(WorkItem(block, lang, todo))
    return Plan(tuple(layers), tuple(languages), blocks, work)


def _images_dir(store: ActivationStore, images_dir: str | Path | None) -> Path:
    folder = images_dir or store.attrs.get("images_dir") or ""
    if not folder:
        raise SaeStoreError(f"store {str(store.path)!r} records no images folder; pass it with --images DIR")
    path = Path(folder)
    if not path.is_dir():
        raise SaeStoreError(
            f"images folder {str(path)!r} does not exist; pass the right one with --images DIR"
        )
    return path


def extract_activations(
    store: ActivationStore,
    loaded: LoadedModel,
    config: ExtractConfig,
    *,
    images_dir: str | Path | None = None,
    command: str = "extract",
) -> ExtractSummary:
    """Fill this task's share of ``store`` with ``loaded``'s residual streams.

    Each owned shard block is run through the model once per language (``config.batch_size``
    samples per forward pass, every requested layer captured by hooks in that pass) and handed to a
    background writer; complete blocks are skipped, so a killed task is simply rerun. Samples whose
    image cannot be loaded are recorded in ``extract_error`` and left unflagged; the rest completes.

    Raises
    ------
    SaeStoreError
        If the model or its prompts do not match the store, the selection is invalid, the writes
        would not fit, an append is running, or a write fails (no flag is set for that block).
    NonFiniteError
        If the model produced NaN/inf and ``config.on_nonfinite`` is ``"error"``.
    """
    started = time.perf_counter()
    store.require_writable()
    check_identity(store, loaded.identity)
    task = plan(store, config)
    spb = store.layout.samples_per_shard
    # blocks a killed run finished before it died are skipped below: their claims go now
    release_dead_claims(store.path, [b.start // spb for b in task.blocks], command=command)
    summary = ExtractSummary(
        blocks_planned=len(task.blocks) * len(task.languages),
        blocks_skipped=len(task.blocks) * len(task.languages) - len(task.work),
    )
    if not task.work:
        log.info("nothing to do: all %d blocks of this task are complete", summary.blocks_planned)
        return summary
    check_prompts(store, loaded.processor, task.languages)
    layout = store.layout
    per_sample = layout.max_tokens * layout.hidden_size
    n_values = sum(len(w.layers) * (w.block.stop - w.block.start) for w in task.work) * per_sample
    check_fits(project(store, n_values), quota=config.quota)
    folder = _images_dir(store, images_dir)
    sample_ids = [str(s) for s in np.asarray(store.array(S.SAMPLE)[...])]
    image_names = [str(s) for s in np.asarray(store.array(S.IMAGE)[...])]
    precision: Precision = "bf16" if store.array(S.ACTIVATIONS).attrs.get("precision") == "bf16" else "fp32"
    prompts, tokens = store.attrs["prompts"], store.attrs["tokens_per_language"]
    by_block: dict[Block, list[WorkItem]] = {}
    for w in task.work:
        by_block.setdefault(w.block, []).append(w)
    warned: set[int] = set()
    progress = _Progress(sum(w.block.stop - w.block.start for w in task.work), config.progress)
    with (
        register_extraction(store.path, [b.start // spb for b in by_block], command=command),
        contextlib.closing(progress),
        BlockWriter(
            store,
            precision=precision,
            on_nonfinite=config.on_nonfinite,
            pending=config.pending_blocks,
            threads=config.writer_threads or default_writer_threads(loaded.device.type),
        ) as writer,
    ):
        removed = sum(store.remove_partial_files(b.start, b.stop) for b in by_block)  # claimed blocks only
        if removed:
            log.info("removed %d temporary files left by a killed writer in this task's blocks", removed)
        for block, items in by_block.items():
            ids = sample_ids[block.start : block.stop]
            images, errors = load_images([folder / name for name in image_names[block.start : block.stop]])
            for w in items:
                t0 = time.perf_counter()
                data = compute_block(
                    loaded,
                    block,
                    w.language,
                    prompts[w.language],
                    w.layers,
                    images,
                    errors,
                    ids,
                    max_tokens=layout.max_tokens,
                    expected_tokens=int(tokens[w.language]),
                    batch_size=config.batch_size,
                    round_bf16=precision == "bf16",
                )
                writer.submit(data)
                summary.blocks_written += 1
                summary.samples += int(data.ok.sum())
                summary.tokens += int(data.n_tokens.sum())
                summary.failed += [(ids[i], w.language, e) for i, e in enumerate(data.errors) if e]
                progress.block(w, time.perf_counter() - t0, summary, writer.stats.bytes)
    summary.bytes_written = writer.stats.bytes
    summary.nonfinite = writer.stats.nonfinite
    summary.float16_overflow = dict(writer.stats.float16_overflow)
    _warn_overflow(summary.float16_overflow, warned)
    summary.seconds = time.perf_counter() - started
    return summary


def default_writer_threads(device_type: str) -> int:
    """Writer threads when none are configured: the cores the model leaves free.

    Beside a GPU the model needs one core to drive it; on a CPU it uses torch's threads.
    """
    import torch

    cores = available_cores()
    used = 1 if device_type != "cpu" else torch.get_num_threads()
    return max(1, cores - used)


class _Progress:
    """A bar on a terminal plus a log line per block with samples/s, tokens/s, MB/s written and ETA."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.started = total, 0, time.perf_counter()
        # off a terminal the log line per block below is the progress report; beside a bar it is a debug line
        self.bar = progress_bar(total=total, unit="sample", desc="extract", enabled=enabled, log_lines=False)
        self.level = logging.DEBUG if enabled and on_terminal() else logging.INFO

    def block(self, w: WorkItem, seconds: float, summary: ExtractSummary, written_bytes: int) -> None:
        n = w.block.stop - w.block.start
        self.done += n
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate, tok_s, mb_s = self.done / elapsed, summary.tokens / elapsed, written_bytes / 1e6 / elapsed
        self.bar.update(n)
        self.bar.set_postfix(tok_s=f"{tok_s:.0f}", MB_s=f"{mb_s:.0f}", refresh=False)
        log.log(
            self.level,
            "samples %d:%d %s: %d layers in %.2f s | %.2f samples/s, %.0f tokens/s, %.0f MB/s written, "
            "ETA %.0f s",
            w.block.start, w.block.stop, w.language, len(w.layers), seconds, rate, tok_s, mb_s,
            (self.total - self.done) / rate,
        )  # fmt: skip

    def close(self) -> None:
        self.bar.close()


def _warn_overflow(overflow: dict[int, float], warned: set[int]) -> None:
    for layer, top in sorted(overflow.items()):
        if layer not in warned:
            warned.add(layer)
            warnings.warn(
                f"layer {layer} has activations up to |x| = {top:.4g}, beyond float16's {FLOAT16_MAX:.0f}: "
                "never cast this store's activations to float16 (use bfloat16 or float32)",
                Float16OverflowWarning,
                stacklevel=3,
            )


def run_extraction(
    store_path: str | Path,
    model_dir: str | Path,
    config: ExtractConfig,
    *,
    device: str = "auto",
    dtype: str = "auto",
    images_dir: str | Path | None = None,
    command: str = "extract",
) -> ExtractSummary:
    """Open the store, check the model folder against it, load the model and extract.

    The selection and the model's identity (config and weight headers) are checked before the
    weights are loaded, so a wrong model or layer is refused before gigabytes are read.
    """
    store = open_store(store_path)
    plan(store, config)
    check_writable(store)
    check_identity(store, model_identity(model_dir))
    loaded = load_model(model_dir, device=device, dtype=dtype)
    return extract_activations(store, loaded, config, images_dir=images_dir, command=command)
