"""The SAE trainer: sees only an iterator of batches (no paths, no zarr).

``train_step(batch)`` is one Adam step; ``fit`` loops until ``config.steps`` and calls the injected
``on_log`` (a metrics record every ``log_every`` steps) and ``on_checkpoint`` (every
``checkpoint_every`` steps) hooks; ``state_dict`` / ``load_state_dict`` capture everything a resumed
run needs to continue bit-identically (model, optimizer, step, dead-latent counters, metric
accumulators, torch RNG); the caller adds the data position.

Dead latents are counted in tokens: a latent that has not fired on the last ``dead_window_tokens``
training tokens is dead (fed to AuxK). The training records and the final metrics report it as
``dead_fraction_train_window`` with its window ``dead_window_tokens`` (the whole run while it is
shorter than the window); ``dead_fraction`` is only ever the held-out metric.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor

from sae_store.device import resolve_device
from sae_store.progress import progress_bar
from sae_store.train.config import TrainerConfig
from sae_store.train.discovery import DEAD_METRICS
from sae_store.train.metrics import EvalResult, held_out_metrics, mean_log10_density
from sae_store.train.sae import ForwardOutput, SparseAutoencoder

_SUMS = ("loss", "mse", "fvu", "l0", "aux_loss", "sparsity_loss", "data_wait_s", "compute_s")


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
        self._reset_window()

    def _reset_window(self) -> None:
        self._sums = dict.fromkeys(_SUMS, 0.0)
        self._fired = torch.zeros(self.sae.d_sae, dtype=torch.long, device=self.device)
        self._window_steps = 0
        self._window_tokens = 0

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
        """One optimizer step on ``batch`` [batch, d_in]."""
        x = batch.to(self.device, non_blocking=True)
        if self.step == 0 and self.config.b_dec_init == "mean":
            with torch.no_grad():
                self.sae.b_dec.copy_(x.float().mean(dim=0))
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        with self._autocast():
            out = self.sae(x, dead_mask=self.dead_mask(), sparsity_scale=self.sparsity_scale(self.step))
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
            for key, value in (
                ("loss", out.loss),
                ("mse", out.mse_loss),
                ("aux_loss", out.aux_loss),
                ("sparsity_loss", out.sparsity_loss),
                ("fvu", err / centred.clamp_min(1e-12)),
                ("l0", active.sum(dim=-1).double().mean()),
            ):
                self._sums[key] += value.item()
        self.step += 1
        self.tokens += len(x)
        self._window_steps += 1
        self._window_tokens += len(x)
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
        c = self.config
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        with progress_bar(
            total=c.steps, initial=self.step, desc="train", unit="step", enabled=progress
        ) as bar:
            while self.step < c.steps:
                t0 = time.perf_counter()
                batch = next(batches)
                t1 = time.perf_counter()
                self.train_step(batch)
                sync()
                t2 = time.perf_counter()
                self._sums["data_wait_s"] += t1 - t0
                self._sums["compute_s"] += t2 - t1
                bar.update(1)
                if self.step % c.log_every == 0 or self.step == c.steps:
                    record = self.log_record()
                    name = DEAD_METRICS["dead_fraction_train_window"][0]
                    bar.set_postfix(
                        {
                            "fvu": f"{record['fvu']:.3f}",
                            "l0": f"{record['l0']:.1f}",
                            name: f"{record['dead_fraction_train_window']:.1%}",
                        }
                    )
                    if on_log is not None:
                        on_log(record)
                if (
                    on_checkpoint is not None
                    and c.checkpoint_every
                    and self.step % c.checkpoint_every == 0
                    and self.step < c.steps
                ):
                    on_checkpoint(self.step)

    def log_record(self) -> dict[str, Any]:
        """Averages over the steps since the previous record; starts a new window."""
        n = max(self._window_steps, 1)
        means = {k: v / n for k, v in self._sums.items()}
        record = {
            "step": self.step,
            "tokens": self.tokens,
            "lr": self.lr_at(self.step - 1),
            **{k: means[k] for k in ("loss", "mse", "fvu", "l0", "aux_loss", "sparsity_loss")},
            "explained_variance": 1.0 - means["fvu"],
            **self.training_dead(),
            "mean_log10_density": mean_log10_density(self._fired, self._window_tokens),
            "data_wait_s": means["data_wait_s"],
            "compute_s": means["compute_s"],
            "steps_per_s": n / max(self._sums["data_wait_s"] + self._sums["compute_s"], 1e-12),
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
            "window": {
                "sums": dict(self._sums),
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
        window = state["window"]
        self._sums = {k: float(window["sums"][k]) for k in _SUMS}
        self._fired = window["fired"].to(self.device)
        self._window_steps = int(window["steps"])
        self._window_tokens = int(window["tokens"])
        torch.set_rng_state(state["torch_rng"])
