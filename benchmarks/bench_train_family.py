"""SAE training defaults on a family of known dictionaries, not one: do they find the dictionary on data
they were not tuned on?

Each member is a synthetic layer with a known dictionary of 4 x d_in unit atoms: atoms fire with
power-law (rank^-0.6) or uniform frequencies, true L0 (mean active atoms per token) 8, 16 or 32,
magnitudes uniform in [0.5, 1.5], 1 % noise per dimension; some members add four large near-constant
channels (+40 +- 0.5, as residual streams carry) and round the values to bfloat16 (as the store keeps
them). Inputs are scaled to mean norm sqrt(d_in), as the data provider does. Every SAE is trained at
the command line's defaults (``SaeConfig(d_in=...)``, ``TrainerConfig()``, ``DataConfig().batch_size``,
so d_sae = 8 x d_in, k 64, 2000 steps of 4096 tokens) and judged on held-out tokens: FVU, L0, dead
(latents that never fire on them) and recovery (mean over true atoms of the best cosine with a
decoder row; also the share of atoms recovered above 0.9). Target: recovery >= 0.9, dead <= 5 %,
FVU <= 0.25 on every member.

    python benchmarks/bench_train_family.py                     # the d_in 256 members (CPU)
    python benchmarks/bench_train_family.py --d-in 2560 --device cuda   # the d_in 2560 members (GPU)
    python benchmarks/bench_train_family.py --quick     # d_in 64, three members, 600 steps (make bench)
    python benchmarks/bench_train_family.py --members 'uniform L8' --set lr=1e-3,3e-3 --steps 600
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import result
from sae_store.train.config import DataConfig, SaeConfig, TrainerConfig
from sae_store.train.sae import build_sae
from sae_store.train.sweep import sweep_entries
from sae_store.train.trainer import Hooks, Trainer, fit_together

TARGET = {"recovery": 0.9, "dead": 0.05, "fvu": 0.25}
EVAL_TOKENS = 65_536


@dataclass(frozen=True)
class Member:
    """One synthetic layer of the family."""

    d_in: int
    freq: str  # "power" or "uniform"
    l0: int
    channels: bool  # four near-constant channels at +40
    bf16: bool  # values rounded to bfloat16

    @property
    def name(self) -> str:
        extras = (" +40 channels" if self.channels else "") + (" bf16" if self.bf16 else "")
        return f"{self.freq} L{self.l0}{extras}"


def family(d_in: int) -> list[Member]:
    """Both frequency laws x true L0 8, 16, 32, each plain (float32) and residual-stream-shaped (the
    channels, bf16); and the channels and bf16 each on their own, on power-law L16."""
    members = [
        Member(d_in, freq, l0, shaped, shaped)
        for freq, l0, shaped in itertools.product(("power", "uniform"), (8, 16, 32), (False, True))
    ]
    return [*members, Member(d_in, "power", 16, True, False), Member(d_in, "power", 16, False, True)]


QUICK = [Member(64, "power", 8, False, False), Member(64, "uniform", 8, False, False),
         Member(64, "uniform", 16, True, True)]  # fmt: skip


class Data:
    """Token vectors of a member: sparse sums of its atoms, generated batch by batch (seeded)."""

    def __init__(self, m: Member, seed: int = 0, device: str = "cpu") -> None:
        self.member, self.device = m, torch.device(device)
        # not the SAEs' initialisation seed: an SAE initialised with the generator that drew the atoms
        # would start with them as its first decoder rows
        gen = torch.Generator().manual_seed(1_000_003 + seed)
        n = 4 * m.d_in
        atoms = torch.randn(n, m.d_in, generator=gen)
        self.atoms = (atoms / atoms.norm(dim=1, keepdim=True)).to(self.device)
        weight = torch.arange(1, n + 1, dtype=torch.float64) ** -0.6 if m.freq == "power" else torch.ones(n)
        self.freq = (weight * m.l0 / weight.sum()).clamp(max=0.5).float().to(self.device)
        self.offset = torch.zeros(m.d_in, device=self.device)
        if m.channels:
            self.offset[:4] = 40.0
        self.gen = torch.Generator(self.device).manual_seed(seed + 1)
        self.scale = 1.0
        self.scale = float(m.d_in**0.5 / self.batch(4096).norm(dim=1).mean())

    def batch(self, n: int) -> torch.Tensor:
        m, g = self.member, self.gen
        on = torch.rand(n, len(self.freq), generator=g, device=self.device) < self.freq
        mags = torch.rand(n, len(self.freq), generator=g, device=self.device) + 0.5
        x = (on * mags) @ self.atoms + 0.01 * torch.randn(n, m.d_in, generator=g, device=self.device)
        if m.channels:
            x += self.offset + 0.5 * torch.randn(n, m.d_in, generator=g, device=self.device) * (
                self.offset > 0
            )
        if m.bf16:
            x = x.bfloat16().float()
        return x * self.scale

    def stream(self, n: int) -> Iterator[torch.Tensor]:
        while True:
            yield self.batch(n)

    def held_out(self, n: int = EVAL_TOKENS, batch: int = 4096) -> list[torch.Tensor]:
        state = self.gen.get_state()
        self.gen.manual_seed(12345)
        out = [self.batch(batch) for _ in range(n // batch)]
        self.gen.set_state(state)
        return out


def recovery(W_dec: torch.Tensor, atoms: torch.Tensor) -> torch.Tensor:
    """Per true atom, the best cosine with a decoder row."""
    learned = W_dec.detach().float()
    learned = learned / learned.norm(dim=1, keepdim=True).clamp_min(1e-12)
    best = torch.cat([(a @ learned.T).max(dim=1).values for a in atoms.split(4096)])
    return best.cpu()


def judge(trainer: Trainer, data: Data, held: list[torch.Tensor]) -> dict[str, float]:
    m = trainer.evaluate(held).metrics
    best = recovery(trainer.sae.W_dec, data.atoms)
    q = {"fvu": m["fvu"], "l0": m["l0"], "dead": m["dead_fraction"], "recovery": float(best.mean()),
         "recovered": float((best > 0.9).float().mean())}  # fmt: skip
    q["ok"] = (
        q["recovery"] >= TARGET["recovery"] and q["dead"] <= TARGET["dead"] and q["fvu"] <= TARGET["fvu"]
    )
    return q


def configs(
    m: Member, device: str, sets: Sequence[str] = (), steps: int | None = None
) -> list[tuple[str, Any]]:
    """The CLI defaults for a member's width (``sets``: ``--sweep``-style variations around them)."""
    from sae_store.train.config import RunConfig

    trainer = TrainerConfig(device=device, checkpoint_every=0)
    if steps is not None:
        trainer = replace(trainer, steps=steps, lr_warmup_steps=None)
    base = RunConfig(SaeConfig(d_in=m.d_in), DataConfig(layer=0), trainer)
    return sweep_entries(base, sets) if sets else [("defaults", base)]


class Pause(Exception):
    """Raised by the batch stream after a chunk of steps (see ``train_member``'s ``state``)."""


def train_member(
    m: Member,
    runs: list[tuple[str, Any]],
    *,
    device: str,
    seed: int = 0,
    curve: bool = False,
    state: Path | None = None,
    chunk: int = 0,
) -> list[dict[str, Any]] | None:
    """Train every run on the member's batches in one pass; their held-out quality (and, with
    ``curve``, the training records). With ``state`` and ``chunk``, stop after ``chunk`` steps, save
    everything to ``state`` and return None; a later call continues exactly (runs of hours on a shared
    machine go in pieces)."""
    data = Data(m, seed, device)
    batch = DataConfig(layer=0).batch_size
    trainers = [Trainer(build_sae(c.sae, seed=c.trainer.seed), c.trainer) for _, c in runs]
    logs: list[list[dict[str, Any]]] = [[] for _ in runs]
    seconds = 0.0
    if state is not None and state.is_file():
        saved = torch.load(state, weights_only=True)
        for t, s in zip(trainers, saved["trainers"], strict=True):
            t.load_state_dict(s)
        data.gen.set_state(saved["gen"])
        logs, seconds = saved["logs"], saved["seconds"]

    def batches() -> Iterator[torch.Tensor]:
        for i in itertools.count():
            if chunk and i == chunk:
                raise Pause
            yield data.batch(batch)

    t0 = time.perf_counter()
    try:
        fit_together([(t, Hooks(on_log=log.append)) for t, log in zip(trainers, logs, strict=True)],
                     batches(), progress=False)  # fmt: skip
    except Pause:
        assert state is not None
        seconds += time.perf_counter() - t0
        torch.save({"trainers": [t.state_dict() for t in trainers], "gen": data.gen.get_state(), "logs": logs,
                    "seconds": seconds}, state)  # fmt: skip
        print(f"{m.name}: paused at step {min(t.step for t in trainers)}", flush=True)
        return None
    seconds += time.perf_counter() - t0
    held = data.held_out()
    out = []
    for (label, _), t, log in zip(runs, trainers, logs, strict=True):
        q = {"member": m.name, "d_in": m.d_in, "run": label, **judge(t, data, held), "seconds": seconds}
        if curve:
            q["curve"] = [(r["step"], r["fvu"], r["dead_fraction"]) for r in log]
        print(json.dumps({k: v for k, v in q.items() if k != "curve"}), flush=True)
        out.append(q)
    return out


def _row(q: dict[str, Any]) -> str:
    mark = "yes" if q["ok"] else "**no**"
    return (f"| {q['member']} | {q['fvu']:.3f} | {q['l0']:.1f} | {q['dead']:.1%} | {q['recovery']:.3f} | "
            f"{q['recovered']:.1%} | {mark} |")  # fmt: skip


def table(rows: list[dict[str, Any]]) -> list[str]:
    return [
        "| member | FVU | L0 | dead | recovery | atoms > 0.9 | meets target |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *[_row(q) for q in rows],
    ]


def main(quick: bool = True, d_in: int = 256, device: str = "cpu") -> dict[str, Any]:
    """The quick family by default (what ``benchmarks/run.py`` runs: the whole family at the defaults
    takes hours on a CPU), the whole family of width ``d_in`` with ``quick=False``."""
    torch.set_num_threads(2)
    members = QUICK if quick else family(d_in)
    steps = 600 if quick else None
    rows = []
    for m in members:
        found = train_member(m, configs(m, device, steps=steps), device=device)
        assert found is not None  # no chunks: never paused
        rows += found
    defaults = TrainerConfig()
    lines = [
        f"Known dictionaries of 4 x d_in atoms, d_in {members[0].d_in}; every SAE at the CLI defaults "
        f"(TopK, d_sae {8 * members[0].d_in}, k {SaeConfig().k}, lr {defaults.lr:g}, "
        f"{steps or defaults.steps} steps of {DataConfig(layer=0).batch_size} tokens); quality on "
        f"{EVAL_TOKENS:,} held-out tokens. Target: FVU <= {TARGET['fvu']}, dead <= {TARGET['dead']:.0%}, "
        f"recovery >= {TARGET['recovery']}.",
        "",
        *table(rows),
    ]
    return result(
        f"SAE training defaults on a family of known dictionaries (d_in {members[0].d_in})", lines, rows=rows
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="d_in 64, three members, 600 steps")
    parser.add_argument("--d-in", type=int, default=256, help="width of the members (256 or 2560)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--members", help="comma-separated member names (default: the whole family)")
    parser.add_argument(
        "--set", action="append", default=[], help="--sweep-style variation, e.g. lr=1e-3,3e-3"
    )
    parser.add_argument("--steps", type=int, help="steps (default: the CLI's)")
    parser.add_argument("--curve", action="store_true", help="also print the training curve")
    parser.add_argument("--json", type=Path, help="append the results to this JSON-lines file")
    parser.add_argument("--state", type=Path, help="with --chunk: where a paused run keeps its state")
    parser.add_argument("--chunk", type=int, default=0, help="steps before pausing (exit code 3)")
    args = parser.parse_args()
    if not (args.members or args.set or args.steps or args.curve):
        main(quick=args.quick, d_in=args.d_in, device=args.device)
        sys.exit(0)
    torch.set_num_threads(2)
    chosen = QUICK if args.quick else family(args.d_in)
    if args.members:
        wanted = [w.strip() for w in args.members.split(",")]
        chosen = [m for m in chosen if m.name in wanted]
    for m in chosen:
        runs = configs(m, args.device, args.set, args.steps)
        kw = {"curve": args.curve, "state": args.state, "chunk": args.chunk}
        found = train_member(m, runs, device=args.device, **kw)
        if found is None:
            sys.exit(3)
        for q in found:
            if args.json:
                with args.json.open("a") as f:
                    f.write(json.dumps(q) + "\n")
