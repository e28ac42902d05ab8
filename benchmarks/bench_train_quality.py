"""SAE quality per token at the defaults: sae-store's trainer vs SAELens 6.54 on a known dictionary.

Synthetic data with a known sparse dictionary (1024 unit atoms in 256 dims; each token draws atoms
with power-law frequencies, 16 on average, magnitudes uniform in [0.5, 1.5], plus 1 % noise; inputs
scaled to mean norm sqrt(d_in), as both trainers recommend). TopK SAEs with d_sae 2048, k 16, batches
of 4096, 300 steps, 2 torch threads. Both trainers receive the same batch at every step; their steps
alternate in blocks (the order flips every block) and each block's tokens/s ratio is reported.

Quality on 65,536 held-out tokens: FVU (1 - explained variance about the held-out mean), L0, dead
(latents that never fire on the held-out tokens) and recovery (mean over true atoms of the best cosine
with a decoder row). Also: every architecture at the new defaults vs the old ones, the sweep behind
the defaults (sae-store's trainer only) on the known dictionary and on a store-shaped layer read
through ``StoreDataProvider``, and (``--long``) one run at 10x the steps.

SAELens runs its own ``SAETrainer._train_step`` (its optimizer, clipping and dead-latent window) at
its defaults (lr 3e-4 constant, decoder init norm 0.1, AuxK coefficient 1, dead window 1000 steps).
Needs ``pip install -e ".[bench]"`` (sae-lens); without it the SAELens rows are left out.

    python benchmarks/bench_train_quality.py [--quick] [--long] [--full]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import result
from sae_store.train.config import SaeConfig, TrainerConfig
from sae_store.train.sae import build_sae
from sae_store.train.trainer import Trainer

D_IN, N_ATOMS, MEAN_ACTIVE, D_SAE, K, BATCH, STEPS, THREADS = 256, 1024, 16, 2048, 16, 4096, 300, 2
EVAL_TOKENS = 65_536
BLOCK = 25  # steps per interleaved block
SMALL_BATCH = 1024  # batch of the architecture table and the sweeps unless --full


@dataclass
class Synthetic:
    """A known dictionary and a generator of token batches built from it."""

    atoms: torch.Tensor  # [n_atoms, d_in], unit rows
    freq: torch.Tensor  # [n_atoms] firing probability per token
    scale: float
    gen: torch.Generator

    @classmethod
    def make(cls, seed: int = 0, d_in: int = D_IN, n_atoms: int = N_ATOMS) -> Synthetic:
        gen = torch.Generator().manual_seed(seed)
        atoms = torch.randn(n_atoms, d_in, generator=gen)
        atoms /= atoms.norm(dim=1, keepdim=True)
        ranks = torch.arange(1, n_atoms + 1, dtype=torch.float64)
        freq = ranks**-0.6
        freq = (freq * MEAN_ACTIVE / freq.sum()).clamp(max=0.5).float()
        data = cls(atoms, freq, 1.0, gen)
        data.scale = float(d_in**0.5 / data.batch(BATCH).norm(dim=1).mean())
        return data

    def batch(self, n: int) -> torch.Tensor:
        on = torch.rand(n, len(self.freq), generator=self.gen) < self.freq
        mags = torch.rand(n, len(self.freq), generator=self.gen) + 0.5
        x = (on * mags) @ self.atoms
        x += 0.01 * torch.randn(x.shape, generator=self.gen)
        return x * self.scale

    def held_out(self, n: int = EVAL_TOKENS) -> list[torch.Tensor]:
        state = self.gen.get_state()
        self.gen.manual_seed(12345)
        out = [self.batch(BATCH) for _ in range(n // BATCH)]
        self.gen.set_state(state)
        return out


def recovery(W_dec: torch.Tensor, atoms: torch.Tensor) -> float:
    """Mean over true atoms of the best cosine similarity with a decoder row."""
    learned = W_dec.detach().float()
    learned = learned / learned.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return float((atoms @ learned.T).max(dim=1).values.mean())


@torch.no_grad()
def quality(
    encode: Callable[[torch.Tensor], torch.Tensor],
    decode: Callable[[torch.Tensor], torch.Tensor],
    W_dec: torch.Tensor,
    data: Synthetic,
    held: list[torch.Tensor],
) -> dict[str, float]:
    sse = total = l0 = n = 0.0
    fired = torch.zeros(W_dec.shape[0], dtype=torch.bool)
    mean = torch.cat(held).mean(0)
    for x in held:
        z = encode(x)
        sse += float((decode(z) - x).double().pow(2).sum())
        total += float((x - mean).double().pow(2).sum())
        l0 += float((z > 0).sum())
        fired |= (z > 0).any(0)
        n += len(x)
    return {
        "fvu": sse / total,
        "l0": l0 / n,
        "dead": float((~fired).float().mean()),
        "recovery": recovery(W_dec, data.atoms),
    }


class Ours:
    """sae-store's trainer, one step at a time."""

    name = "sae-store"

    def __init__(self, steps: int, architecture: str = "topk", **kw: Any) -> None:
        sae_kw = {k: kw.pop(k) for k in ("decoder_init_norm", "aux_k_coefficient") if k in kw}
        sae_config = SaeConfig(architecture=architecture, d_in=D_IN, d_sae=D_SAE, k=K, **sae_kw)  # type: ignore[arg-type]
        kw.setdefault("lr_warmup_steps", min(100, steps // 10))  # as `sae-store train` does
        self.trainer = Trainer(
            build_sae(sae_config, seed=0),
            TrainerConfig(steps=steps, log_every=steps, checkpoint_every=0, device="cpu", **kw),
        )

    def step(self, x: torch.Tensor) -> None:
        self.trainer.train_step(x)

    def quality(self, data: Synthetic, held: list[torch.Tensor]) -> dict[str, float]:
        sae = self.trainer.sae.eval()
        try:
            return quality(sae.encode, sae.decode, sae.W_dec, data, held)
        finally:
            sae.train()


class SaeLens:
    """SAELens 6.54's own training step (SAETrainer._train_step) at its defaults."""

    name = "SAELens"

    def __init__(self, steps: int) -> None:
        from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
        from sae_lens.config import SAETrainerConfig
        from sae_lens.training.sae_trainer import SAETrainer

        torch.manual_seed(0)
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K))
        cfg = SAETrainerConfig(
            total_training_samples=steps * BATCH, train_batch_size_samples=BATCH, lr_end=3e-4 / 10
        )  # lr_end as its runner config sets it (lr / 10; unused by the constant schedule)
        self.trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=iter(()))
        self.sae = sae

    def step(self, x: torch.Tensor) -> None:
        self.trainer._train_step(self.sae, x)
        self.trainer.n_training_steps += 1
        self.trainer.n_training_samples += len(x)

    def quality(self, data: Synthetic, held: list[torch.Tensor]) -> dict[str, float]:
        self.sae.eval()
        return quality(self.sae.encode, self.sae.decode, self.sae.W_dec, data, held)


def saelens_available() -> bool:
    try:
        import sae_lens  # noqa: F401
    except ImportError:
        return False
    return True


def interleaved(
    runners: list[Any], data: Synthetic, steps: int, block: int = BLOCK
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Train every runner on the same batches, their steps alternating in blocks; per-block tokens/s."""
    rounds: list[dict[str, float]] = []
    for start in range(0, steps, block):
        batches = [data.batch(BATCH) for _ in range(min(block, steps - start))]
        order = runners if (start // block) % 2 == 0 else runners[::-1]
        times: dict[str, float] = {}
        for runner in order:
            t0 = time.perf_counter()
            for x in batches:
                runner.step(x)
            times[runner.name] = len(batches) * BATCH / (time.perf_counter() - t0)
        rounds.append(times)
    held = data.held_out()
    return rounds, [r.quality(data, held) for r in runners]


def _solo(steps: int, batch: int, architecture: str = "topk", **kw: Any) -> dict[str, float]:
    """Quality of one sae-store run (no timing) on the known dictionary, trainer/SAE settings ``kw``."""
    data = Synthetic.make(0)
    runner = Ours(steps, architecture, **kw)
    for _ in range(steps):
        runner.step(data.batch(batch))
    return runner.quality(data, data.held_out())


def old_defaults(batch: int) -> dict[str, Any]:
    """The defaults before the sweep: lr 3e-4, unit-norm decoder for every architecture, a dead window
    of 1000 steps (so ``1000 * batch`` tokens), 100 warm-up steps."""
    return {"lr": 3e-4, "decoder_init_norm": 1.0, "dead_window_tokens": 1000 * batch, "lr_warmup_steps": 100}


#: Sweep points besides the old and the new defaults (sae-store's trainer, TopK).
SWEEP: list[dict[str, Any]] = [{"lr": 3e-3}]
ARCHES = ("topk", "batchtopk", "matryoshka_batchtopk", "relu", "jumprelu")


def _setting(cfg: dict[str, Any], batch: int) -> str:
    """A sweep point as table cells: lr | decoder init norm | dead window (tokens)."""
    norm = cfg.get("decoder_init_norm", 1.0)
    window = cfg.get("dead_window_tokens", TrainerConfig().dead_window_tokens)
    return f"{cfg.get('lr', TrainerConfig().lr):g} | {norm:g} | {window:,}"


def _sweep_points(batch: int) -> list[tuple[str, dict[str, Any]]]:
    return [("old defaults", old_defaults(batch)), ("new defaults", {})] + [
        ("new, " + ", ".join(f"{k} {v:g}" for k, v in cfg.items()), cfg) for cfg in SWEEP
    ]


def store_rows(steps: int, batch: int, points: list[tuple[str, dict[str, Any]]] | None = None) -> list[str]:
    """The sweep (or ``points``: labelled trainer settings) trained through ``StoreDataProvider`` on a
    store-shaped layer (outlier dimensions, bf16 values, token vectors grouped by sample), evaluated
    on its held-out samples with the trainer's own metrics."""
    import shutil
    import tempfile

    from benchmarks.gpu_train import Setup, make_store
    from sae_store.store import open_store
    from sae_store.train.config import DataConfig
    from sae_store.train.data import StoreDataProvider

    tmp = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    rows = []
    try:
        path, atoms = make_store(tmp / "store.zarr", Setup(D_IN, 256, 280, (), batch, 0, 0, "cpu"))
        provider = StoreDataProvider(open_store(path), DataConfig(layer=0, batch_size=batch))
        scale = provider.estimate_scale()
        for label, cfg in points or _sweep_points(batch):
            print(f"store-shaped data: {label}", flush=True)
            runner = Ours(steps, **cfg)
            stream = provider.batches(scale=scale)
            for _ in range(steps):
                runner.step(next(stream))
            stream.close()
            m = runner.trainer.evaluate(provider.validation_batches(scale=scale)).metrics
            rec = recovery(runner.trainer.sae.W_dec, torch.from_numpy(atoms))
            rows.append(
                f"| {label} | {_setting(cfg, batch)} | {m['fvu']:.3f} | {m['l0']:.1f} | "
                f"{m['dead_fraction']:.1%} ({m['dead_fraction_tokens']:,} tokens) | "
                f"{m['dead_fraction_train_window']:.1%} | {rec:.3f} |"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _fmt(q: dict[str, float]) -> str:
    return f"{q['fvu']:.3f} | {q['l0']:.1f} | {q['dead']:.1%} | {q['recovery']:.3f}"


def _core(steps: int) -> tuple[list[str], dict[str, dict[str, float]], list[float]]:
    """The interleaved comparison with SAELens: markdown lines, qualities, per-block ratios."""
    data = Synthetic.make(0)
    runners: list[Any] = [Ours(steps)]
    if saelens_available():
        runners.append(SaeLens(steps))
    rounds, qualities = interleaved(runners, data, steps)
    lines = [
        f"Known dictionary: {N_ATOMS} atoms in {D_IN} dims, ~{MEAN_ACTIVE} active per token; TopK d_sae "
        f"{D_SAE}, k {K}, batches of {BATCH}, {steps} steps, {THREADS} threads. Quality on {EVAL_TOKENS:,} "
        "held-out tokens; both trainers at their defaults, fed the same batches.",
        "",
        "| trainer | FVU | L0 | dead | recovery |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {r.name} | {_fmt(q)} |" for r, q in zip(runners, qualities, strict=True)],
    ]
    ratios: list[float] = []
    if len(runners) == 2:
        ratios = [r["sae-store"] / r["SAELens"] for r in rounds]
        lines += [
            "",
            f"Tokens/s, blocks of {BLOCK} steps alternating (order flips each block):",
            "",
            "| block | sae-store tokens/s | SAELens tokens/s | ratio |",
            "| --- | --- | --- | --- |",
            *[
                f"| {i + 1} | {r['sae-store']:,.0f} | {r['SAELens']:,.0f} | {ratio:.2f}x |"
                for i, (r, ratio) in enumerate(zip(rounds, ratios, strict=True))
            ],
            f"| median | | | **{statistics.median(ratios):.2f}x** |",
        ]
    return lines, {r.name: q for r, q in zip(runners, qualities, strict=True)}, ratios


def _arch_and_sweep(steps: int, batch: int) -> list[str]:
    """Every architecture at the old vs the new defaults, and the sweep, on the known dictionary."""
    runs: dict[tuple[str, str], dict[str, float]] = {}
    for arch in ARCHES:
        for label, cfg in _sweep_points(batch)[:2]:
            print(f"known dictionary: {arch}, {label}", flush=True)
            runs[arch, label] = _solo(steps, batch, arch, **cfg)
    sweep = []
    for label, cfg in _sweep_points(batch):
        if ("topk", label) not in runs:
            print(f"known dictionary: topk, {label}", flush=True)
            runs["topk", label] = _solo(steps, batch, **cfg)
        sweep.append(f"| {label} | {_setting(cfg, batch)} | {_fmt(runs['topk', label])} |")
    return [
        "",
        f"Every architecture, old defaults vs new (same dictionary, d_sae {D_SAE}, k {K} for the TopK "
        f"family, relu/jumprelu at their sparsity coefficients; batches of {batch}, {steps} steps = "
        f"{steps * batch:,} tokens; FVU | L0 | dead | recovery):",
        "",
        "| architecture | old FVU | L0 | dead | recovery | new FVU | L0 | dead | recovery |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *[f"| {a} | {_fmt(runs[a, 'old defaults'])} | {_fmt(runs[a, 'new defaults'])} |" for a in ARCHES],
        "",
        f"Sweep behind the defaults on the known dictionary (TopK, batches of {batch}, {steps} steps):",
        "",
        "| setting | lr | decoder init norm | dead window (tokens) | FVU | L0 | dead | recovery |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *sweep,
    ]


def main(quick: bool = False, long: bool = False, full: bool = False, core: bool = True) -> dict[str, Any]:
    """Run the comparison; the secondary tables use batches of ``SMALL_BATCH`` unless ``full``."""
    torch.set_num_threads(THREADS)
    steps = 60 if quick else STEPS
    batch = BATCH if full else SMALL_BATCH
    lines, qualities, ratios = _core(steps) if core else ([], {}, [])
    if not quick:
        lines += _arch_and_sweep(steps, batch)
        lines += [
            "",
            f"The same sweep on store-shaped data through StoreDataProvider (d_in {D_IN}, 1024 atoms, 32 "
            "active per token, four outlier dimensions at +40, bf16 values, 256 samples x 280 tokens, "
            f"10 % of the samples held out; TopK d_sae {D_SAE}, k {K}, batches of {batch}, {steps} steps):",
            "",
            "| setting | lr | decoder init norm | dead window (tokens) | FVU | L0 | dead (held-out) "
            "| dead in last training window | recovery |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            *store_rows(steps, batch),
        ]
    if long:
        q = _solo(10 * steps, BATCH)
        lines += [
            "",
            f"At 10x the steps ({10 * steps}), defaults: {_fmt(q)} (FVU | L0 | dead | recovery)",
        ]
    if not full and not quick:
        lines += [
            "",
            f"Sized for a shared 2-core machine (about 40 minutes): the architecture table and both "
            f"sweeps use batches of {batch} (the interleaved comparison {BATCH}) and the sweep has "
            f"{len(_sweep_points(batch))} points; `--full` runs them at {BATCH}, `--long` adds a run at "
            "10x the steps.",
        ]
    return result(
        "SAE training quality per token: sae-store vs SAELens on a known dictionary",
        lines,
        quality=qualities,
        ratio_median=statistics.median(ratios) if ratios else None,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="60 steps, the interleaved comparison only")
    parser.add_argument("--long", action="store_true", help="also one run at 10x the steps")
    parser.add_argument(
        "--full",
        action="store_true",
        help=f"architecture table and sweeps at batches of {BATCH}, not {SMALL_BATCH}",
    )
    parser.add_argument("--no-core", action="store_true", help="skip the interleaved SAELens comparison")
    args = parser.parse_args()
    main(quick=args.quick, long=args.long, full=args.full, core=not args.no_core)
