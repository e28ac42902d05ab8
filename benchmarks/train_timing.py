"""Training timings shared by the CPU benchmark (``bench_train.py``) and the GPU one (``gpu_train.py``):
steps that read the device every step vs steps that do not, and several SAEs trained from one pass
over the data vs one pass each. Both interleave the two sides in blocks (the order flips every block)
and feed them the same batches."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from sae_store.train.config import SaeConfig, TrainerConfig
from sae_store.train.data import StoreDataProvider
from sae_store.train.sae import build_sae
from sae_store.train.trainer import Hooks, Trainer, fit_together


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synced_step(trainer: Trainer, x: torch.Tensor) -> None:
    """A step as the trainer made them before it kept its metrics on the device: six values read one
    by one (loss, MSE, AuxK and sparsity losses, L0, the dead count AuxK needed), then the device
    synchronised to time the step."""
    out = trainer.train_step(x)
    for value in (out.loss, out.mse_loss, out.aux_loss, out.sparsity_loss):
        value.item()
    (out.latents > 0).sum(dim=-1).float().mean().item()
    int(trainer.dead_mask().sum())
    synchronize(trainer.device)


def sync_ratio(
    make: Callable[[], Trainer], batches: Iterator[torch.Tensor], *, blocks: int, steps: int
) -> dict[str, Any]:
    """Tokens/s of steps without host reads vs :func:`synced_step`, two trainers made by ``make``
    taking turns in ``blocks`` blocks of ``steps`` steps on the same batches."""
    free, synced = make(), make()
    x = next(batches)
    free.train_step(x)  # warm-up (allocations, kernels)
    synced_step(synced, x)
    rounds = []
    for block in range(blocks):
        xs = [next(batches) for _ in range(steps)]
        rate = {}
        for name in ("free", "synced") if block % 2 == 0 else ("synced", "free"):
            trainer = free if name == "free" else synced
            synchronize(trainer.device)
            t0 = time.perf_counter()
            step = trainer.train_step if name == "free" else (lambda x, t=trainer: synced_step(t, x))
            for x in xs:
                step(x)
            synchronize(trainer.device)
            rate[name] = sum(len(x) for x in xs) / (time.perf_counter() - t0)
        rounds.append(rate)
    ratios = [r["free"] / r["synced"] for r in rounds]
    return {"rounds": rounds, "ratios": ratios, "median": statistics.median(ratios)}


class _Timed:
    """Batches of a stream, counting the seconds spent waiting for them."""

    def __init__(self, stream: Iterator[torch.Tensor]) -> None:
        self.stream, self.wait = stream, 0.0

    def __iter__(self) -> _Timed:
        return self

    def __next__(self) -> torch.Tensor:
        t0 = time.perf_counter()
        batch = next(self.stream)
        self.wait += time.perf_counter() - t0
        return batch


def pass_vs_separate(
    provider: StoreDataProvider, saes: list[SaeConfig], trainer: TrainerConfig, *, scale: float, rounds: int
) -> dict[str, Any]:
    """Seconds to train ``saes`` from one pass over ``provider``'s batches vs one pass each (the same
    batches either way), and the seconds spent waiting for data, per SAE; ``rounds`` interleaved."""
    out: dict[str, list[dict[str, float]]] = {"pass": [], "separate": []}
    for r in range(rounds):
        for side in ("pass", "separate") if r % 2 == 0 else ("separate", "pass"):
            groups = [saes] if side == "pass" else [[s] for s in saes]
            wait, t0 = 0.0, time.perf_counter()
            for group in groups:
                stream = provider.batches(scale=scale)
                timed = _Timed(stream)
                runs = [(Trainer(build_sae(s, seed=0), trainer), Hooks()) for s in group]
                fit_together(runs, timed, progress=False)
                synchronize(runs[0][0].device)
                stream.close()
                wait += timed.wait
            seconds = time.perf_counter() - t0
            out[side].append({"seconds": seconds, "data_s_per_sae": wait / len(saes)})
    med = {side: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for side, rs in out.items()}
    return {"rounds": out, "median": med, "n_saes": len(saes), "steps": trainer.steps}
