"""The SAE trainer: sees only an iterator of batches (no paths, no zarr).

``train_step(batch)`` is one Adam step; :func:`fit_together` trains one or several SAEs from one
stream of batches (a sweep costs one pass over the data) and calls each run's :class:`Hooks`: a
metrics record every ``log_every`` steps, a checkpoint every ``checkpoint_every`` steps, and the end
of its run. ``state_dict`` / ``load_state_dict`` capture everything a resumed run needs to continue
bit-identically (model, optimizer, step, dead-latent counters, metric accumulators, torch RNG); the
caller adds the data position.

No step waits for the device: the metrics of a window accumulate on the device and the host reads
them, with the dead-latent counts, only after every ``log_every``-th step (the *log steps*); step
times are measured between two reads. At each read the latents that are dead (silent on the last
``dead_window_tokens`` training tokens) are listed for AuxK, which until the next read uses those of
them that are still dead.

Dead latents are counted in tokens: the training records and the final metrics report the latents
that have not fired on the last ``dead_window_tokens`` training tokens as
``dead_fraction_train_window``, with that window ``dead_window_tokens`` (the whole run while it is
shorter than the window); ``dead_fraction`` is only ever the held-out metric.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sae_store.device import resolve_device
from sae_store.progress import progress_bar
from sae_store.train.config import TrainerConfig
from sae_store.train.discovery import DEAD_METRICS
from sae_store.train.metrics import EvalResult, held_out_metrics, log10_density
from sae_store.train.sae import DeadLatents, ForwardOutput, SparseAutoencoder

#: Per-step metrics summed on the device over a window (the record shows their means).
METRICS = ("loss", "mse", "fvu", "l0", "aux_loss", "sparsity_loss")


class Trainer:
    """Adam with linear lr warm-up and final decay, gradient clipping and dead-latent tracking."""

    def __init__(self, sae: SparseAutoencoder, config: TrainerConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.sae = sae.to(self.device).train()
        self.optimizer = torch.optim.Adam(sae.parameters(), lr=config.lr, betas=config.adam_betas)
        self.step = 0
        self.tokens = 0
        self.tokens_since_fired = torch.zeros(sae.d_sae, dtype=torch.long, device=self.device)
        self.aux_latents = torch.zeros(0, dtype=torch.long, device=self.device)
        """The latents that were dead at the last read of the device (AuxK's candidates)."""
        self._reset_window()

    def _reset_window(self) -> None:
        self._sums = torch.zeros(len(METRICS), dtype=torch.float32, device=self.device)
        self._fired = torch.zeros(self.sae.d_sae, dtype=torch.long, device=self.device)
        self._window_steps = 0
        self._window_tokens = 0
        self._wait_s = 0.0
        self._window_start = time.perf_counter()

    def lr_at(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based): linear warm-up, constant, linear decay to 0."""
        c = self.config
        factor = min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps else 1.0
        decay = c.lr_decay_steps
        if decay and step >= c.steps - decay:
            factor = min(factor, (c.steps - step) / decay)
        return c.lr * factor

    def sparsity_scale(self, step: int) -> float:
        warmup = self.sae.config.sparsity_warmup_steps
        return min(1.0, (step + 1) / warmup) if warmup else 1.0

    def dead_mask(self) -> Tensor:
        """Latents that have not fired on the last ``dead_window_tokens`` training tokens."""
        return self.tokens_since_fired >= self.config.dead_window_tokens

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.config.autocast_bf16 and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self, batch: Tensor) -> ForwardOutput:
        """One optimizer step on ``batch`` [batch, d_in]; reads the device only after a log step."""
        x = batch.to(self.device, non_blocking=True)
        if self.step == 0 and self.config.b_dec_init == "mean":
            with torch.no_grad():
                self.sae.b_dec.copy_(x.float().mean(dim=0))
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        dead = DeadLatents(self.aux_latents, self.dead_mask()[self.aux_latents])
        with self._autocast():
            out = self.sae(x, dead=dead, sparsity_scale=self.sparsity_scale(self.step))
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.sae.before_step()
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.sae.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.sae.after_step(out)
        with torch.no_grad():
            active = out.latents > 0
            fired = active.any(dim=0)
            self.tokens_since_fired = torch.where(fired, 0, self.tokens_since_fired + len(x))
            self._fired += active.sum(dim=0)
            centred = (x - x.mean(dim=0)).pow(2).sum()
            err = (out.sae_out - x).pow(2).sum()
            fvu = err / centred.clamp_min(1e-12)
            l0 = active.sum(dim=-1).float().mean()
            values = (out.loss, out.mse_loss, fvu, l0, out.aux_loss, out.sparsity_loss)  # as METRICS
            self._sums += torch.stack([v.float() for v in values])
        self.step += 1
        self.tokens += len(x)
        self._window_steps += 1
        self._window_tokens += len(x)
        if self.step % self.config.log_every == 0:
            self.aux_latents = self.dead_mask().nonzero().squeeze(1)
        return out

    def fit(
        self,
        batches: Iterator[Tensor],
        *,
        on_log: Callable[[dict[str, Any]], None] | None = None,
        on_checkpoint: Callable[[int], None] | None = None,
        progress: bool = True,
    ) -> None:
        """Train from the current step to ``config.steps``, drawing one batch per step."""
        fit_together([(self, Hooks(on_log, on_checkpoint))], batches, progress=progress)

    def log_record(self) -> dict[str, Any]:
        """Averages over the steps since the previous record (one read of the device); starts a new
        window."""
        n = max(self._window_steps, 1)
        density = log10_density(self._fired, self._window_tokens).mean()
        window = min(self.config.dead_window_tokens, self.tokens)
        never = (self.tokens_since_fired >= max(window, 1)).double().mean()
        read = torch.cat([self._sums.double(), never[None], density[None]])
        *sums, dead, mean_density = read.tolist()
        wall = time.perf_counter() - self._window_start
        means = dict(zip(METRICS, (s / n for s in sums), strict=True))
        record = {
            "step": self.step,
            "tokens": self.tokens,
            "lr": self.lr_at(self.step - 1),
            **{k: means[k] for k in ("loss", "mse", "fvu", "l0", "aux_loss", "sparsity_loss")},
            "explained_variance": 1.0 - means["fvu"],
            "dead_fraction_train_window": dead,
            "dead_window_tokens": window,
            "mean_log10_density": mean_density,
            "data_wait_s": self._wait_s / n,
            "compute_s": max(wall - self._wait_s, 0.0) / n,
            "steps_per_s": n / max(wall, 1e-12),
        }
        self._reset_window()
        return record

    def evaluate(self, batches: Iterable[Tensor]) -> EvalResult:
        """Held-out metrics of the SAE (:func:`~sae_store.train.metrics.held_out_metrics`) and the dead
        fraction of the last training window."""
        result = held_out_metrics(self.sae, batches, self.device)
        if not result.metrics["tokens"]:
            return result
        return EvalResult({**result.metrics, **self.training_dead()}, result.log10_density)

    def training_dead(self) -> dict[str, float]:
        """Fraction of latents that never fired during the last dead window of training (or during
        the whole run when it was shorter than the window), and that window in tokens."""
        window = min(self.config.dead_window_tokens, self.tokens)
        never = self.tokens_since_fired >= max(window, 1)
        return {
            "dead_fraction_train_window": float(never.double().mean()),
            "dead_window_tokens": window,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly (the data position is the caller's)."""
        return {
            "sae": self.sae.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "tokens": self.tokens,
            "tokens_since_fired": self.tokens_since_fired,
            "aux_latents": self.aux_latents,
            "window": {
                "sums": self._sums,
                "fired": self._fired,
                "steps": self._window_steps,
                "tokens": self._window_tokens,
            },
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sae.load_state_dict(state["sae"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.tokens = int(state["tokens"])
        self.tokens_since_fired = state["tokens_since_fired"].to(self.device)
        self.aux_latents = state["aux_latents"].to(self.device)
        window = state["window"]
        self._reset_window()
        self._sums = window["sums"].to(self.device)
        self._fired = window["fired"].to(self.device)
        self._window_steps = int(window["steps"])
        self._window_tokens = int(window["tokens"])
        torch.set_rng_state(state["torch_rng"])


@dataclass(frozen=True)
class Hooks:
    """What :func:`fit_together` calls for one run."""

    on_log: Callable[[dict[str, Any]], None] | None = None
    """Receives each metrics record (after every ``log_every``-th step and the last one)."""
    on_checkpoint: Callable[[int], None] | None = None
    """Called with the step after every ``checkpoint_every``-th step but the last."""
    on_done: Callable[[], None] | None = None
    """Called once the run has made its last step (the others may go on)."""


def fit_together(
    runs: Sequence[tuple[Trainer, Hooks]], batches: Iterator[Tensor], *, progress: bool = True
) -> None:
    """Train several SAEs from one stream of batches: every batch goes to each run whose next step it
    is, so each run gets the batches it would get alone (a resumed run that is ahead waits for its
    batch; a run with fewer steps stops early). The stream starts at the step of the run furthest
    behind."""
    active = [(t, h) for t, h in runs if t.step < t.config.steps]
    if not active:
        return
    step = min(t.step for t, _ in active)
    end = max(t.config.steps for t, _ in active)
    for t, _ in active:
        t._window_start = time.perf_counter()  # the wall time of a window counts from here
    with progress_bar(total=end, initial=step, desc="train", unit="step", enabled=progress) as bar:
        while active:
            t0 = time.perf_counter()
            batch = next(batches)
            wait = time.perf_counter() - t0
            shown: list[dict[str, Any]] = []
            for trainer, hooks in active:
                if trainer.step != step:
                    continue
                trainer._wait_s += wait
                trainer.train_step(batch)
                _after_step(trainer, hooks, shown)
            if shown:
                bar.set_postfix({"fvu": "/".join(f"{r['fvu']:.3f}" for r in shown),
                                 "l0": "/".join(f"{r['l0']:.1f}" for r in shown),
                                 DEAD_METRICS["dead_fraction_train_window"][0]: "/".join(
                                     f"{r['dead_fraction_train_window']:.1%}" for r in shown)})  # fmt: skip
            bar.update(1)
            step += 1
            active = [(t, h) for t, h in active if t.step < t.config.steps]


def _after_step(trainer: Trainer, hooks: Hooks, shown: list[dict[str, Any]]) -> None:
    c, step = trainer.config, trainer.step
    if step % c.log_every == 0 or step == c.steps:
        record = trainer.log_record()
        shown.append(record)
        if hooks.on_log is not None:
            hooks.on_log(record)
    checkpoint = c.checkpoint_every and step % c.checkpoint_every == 0 and step < c.steps
    if hooks.on_checkpoint is not None and checkpoint:
        hooks.on_checkpoint(step)
    if step == c.steps and hooks.on_done is not None:
        hooks.on_done()
