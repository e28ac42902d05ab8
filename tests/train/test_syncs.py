"""No step waits for the device: the host reads it only at log steps.

On a GPU every read of a device tensor's value (``.item()``, ``float()``, ``bool()``, ``.tolist()``,
``nonzero``, a boolean mask index, ``torch.cuda.synchronize``) makes the host wait for the queued
work. On the CPU the same reads are counted here: by a dispatch mode for the operators that need a
value on the host, and by patching the methods that bypass it. Adam's step counters are host tensors
on every device, so reading them is no wait and is not counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from sae_store.train.config import DataConfig, SaeConfig, TrainerConfig
from sae_store.train.data import StoreDataProvider
from sae_store.train.sae import build_sae
from sae_store.train.trainer import Trainer

_READS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default,
          torch.ops.aten.masked_select.default, torch.ops.aten.unique_consecutive.default,
          torch.ops.aten._unique2.default}  # fmt: skip


class HostReads(TorchDispatchMode):
    """Counts reads of tensor values by the host (see the module's docstring)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        super().__init__()
        self.optimizer = optimizer
        self.count = 0

    def _host_counter(self, t: Any) -> bool:
        return any(t is state.get("step") for state in self.optimizer.state.values())

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in _READS and not self._host_counter(args[0]):
            self.count += 1
        if func is torch.ops.aten.index.Tensor and any(
            i is not None and i.dtype == torch.bool for i in args[1]
        ):
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.fixture
def count_reads(monkeypatch):
    """``count_reads(trainer)``: a HostReads mode that also counts ``tolist``, ``numpy`` and
    ``torch.cuda.synchronize``."""

    def make(trainer: Trainer) -> HostReads:
        mode = HostReads(trainer.optimizer)
        for owner, name in ((torch.Tensor, "tolist"), (torch.Tensor, "numpy"), (torch.cuda, "synchronize")):
            original = getattr(owner, name)

            def counted(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                mode.count += 1
                return _original(*args, **kwargs)

            monkeypatch.setattr(owner, name, counted)
        return mode

    return make


def _per_step(trainer: Trainer, mode: HostReads, batches: Iterator[torch.Tensor]) -> list[int]:
    """Host reads of each step of ``trainer.fit`` (drawing its batch, the step, a log record)."""
    counts: list[int] = []

    def counted() -> Iterator[torch.Tensor]:
        for batch in batches:
            counts.append(mode.count)
            yield batch

    with mode:
        trainer.fit(counted(), on_log=lambda record: None, progress=False)
    return [b - a for a, b in zip(counts, [*counts[1:], mode.count], strict=True)]


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "jumprelu", "matryoshka_batchtopk", "relu"])
def test_no_host_read_between_log_steps(filled_store, count_reads, arch):
    store = filled_store()
    provider = StoreDataProvider(store, DataConfig(layer=1, batch_size=32))
    batches = provider.batches(scale=provider.estimate_scale())
    sae = build_sae(
        SaeConfig(architecture=arch, d_in=16, expansion=4, k=3, matryoshka_widths=(16, 64)), seed=0
    )
    # a dead window of two batches: latents die and AuxK runs on them within the first log window
    config = TrainerConfig(
        steps=24, lr=3e-3, lr_warmup_steps=2, log_every=8, dead_window_tokens=64, device="cpu"
    )
    trainer = Trainer(sae, config)
    with torch.no_grad():
        sae.b_enc[:20] = -1e3  # these latents never fire
    steps = _per_step(trainer, count_reads(trainer), batches)
    log_steps = [s for s in range(24) if (s + 1) % 8 == 0]
    assert [s for s, n in enumerate(steps) if n] == log_steps, steps
    if arch in ("topk", "batchtopk", "matryoshka_batchtopk"):
        assert len(trainer.aux_latents) >= 20  # AuxK had dead latents to work with


def test_a_step_that_reads_the_device_is_counted(filled_store, count_reads):
    """The counter itself: the former per-step reads of the metrics are seen."""
    sae = build_sae(SaeConfig(architecture="topk", d_in=16, expansion=4, k=3), seed=0)
    trainer = Trainer(sae, TrainerConfig(steps=4, lr_warmup_steps=0, log_every=100, device="cpu"))
    mode = count_reads(trainer)
    x = torch.randn(32, 16)
    with mode:
        out = trainer.train_step(x)
        before = mode.count
        float(out.loss.detach()), out.mse_loss.item(), bool(out.latents.any()), out.latents.tolist()
        x[x > 0].sum()
    assert before == 0 and mode.count - before == 5
