"""How fast ``sae-store`` answers ``--help``, ``--version`` and a bad argument, against the heavy import
the same command would pay to run (its yardstick): the answer must come before it, in under 0.5 s.

Each case is a fresh ``python -m sae_store_cli ...`` process (interpreter start-up included, as a user
sees it), timed interleaved with a fresh ``python -c "import <module>"`` of the module the command
imports first when it runs (torch for ``--help`` and ``--version``, which used to import it). Rounds of
all cases are repeated; each round and the median are reported.

Then one ``sae-store demo --quick`` in a fresh folder, timed against what the README and ``--help`` say
it takes (``sae_store.jobs.demo.QUICK_TIME``).

    python benchmarks/run.py --only startup
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.run import result
from sae_store.jobs.demo import QUICK_TIME

#: (what, sae-store argv, the module its run imports first: the yardstick).
CASES: tuple[tuple[str, list[str], str], ...] = (
    ("--version", ["--version"], "torch"),
    ("--help", ["--help"], "torch"),
    ("train --help", ["train", "--help"], "sae_store.train.run"),
    ("analyze bias: bad --alpha", ["analyze", "bias", "s.zarr", "--alpha", "2"], "sae_store.analyze.context"),
    ("train: unknown --arch", ["train", "s.zarr", "--out", "x", "--layer", "0", "--arch", "x"],
     "sae_store.train.run"),
    ("train: --layers (for --layer)", ["train", "s.zarr", "--out", "x", "--layers", "0"],
     "sae_store.train.run"),
    ("extract: bad --layers", ["extract", "s.zarr", "--layers", "1,1"], "sae_store.extract.run"),
    ("report: bad --quota", ["report", "s.zarr", "--out", "r", "--quota=0"], "sae_store.report"),
    ("jobs submit: bad config", ["jobs", "submit", "--config", "bad.yaml"], "sae_store.jobs.submit"),
)  # fmt: skip
LIMIT_S = 0.5


def _time(argv: list[str], cwd: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    code = subprocess.run(argv, cwd=cwd, capture_output=True, check=False).returncode
    return time.perf_counter() - t0, code


def main(rounds: int = 5) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        work = Path(tmp)
        cli = [sys.executable, "-m", "sae_store_cli"]
        demo_s, code = _time([*cli, "demo", "--out", "demo", "--quick"], work)
        assert code == 0, code
        (work / "bad.yaml").write_text("paths: {root: run}\nsae: {k: 0}\n")
        times: dict[str, list[tuple[float, float]]] = {what: [] for what, _, _ in CASES}
        for _ in range(rounds):
            for what, argv, module in CASES:
                answer, code = _time([*cli, *argv], work)
                assert code in (0, 2), (what, code)
                heavy, code = _time([sys.executable, "-c", f"import {module}"], work)
                assert code == 0, (module, code)
                times[what].append((answer, heavy))
    lines = [
        f"Fresh processes, {rounds} interleaved rounds; seconds as `answer / yardstick` per round, then the "
        f"medians and their ratio. Every answer must stay under {LIMIT_S} s.",
        "",
        "| command line | yardstick: `import ...` | rounds (answer / yardstick, s) | answer | yardstick "
        "| ratio |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    medians = {}
    for what, _, module in CASES:
        answer = statistics.median(a for a, _ in times[what])
        heavy = statistics.median(h for _, h in times[what])
        medians[what] = answer
        per_round = ", ".join(f"{a:.2f}/{h:.2f}" for a, h in times[what])
        lines.append(
            f"| `{what}` | `{module}` | {per_round} | {answer:.3f} | {heavy:.3f} | {answer / heavy:.3f} |"
        )
    slow = {what: s for what, s in medians.items() if s >= LIMIT_S}
    lines += [
        "",
        f"Slowest answer: {max(medians.values()):.3f} s" + (f"; OVER {LIMIT_S} s: {slow}" if slow else ""),
        "",
        f"`sae-store demo --out DIR --quick` in a fresh folder: {demo_s:.0f} s (the README and --help say "
        f"{QUICK_TIME}).",
    ]
    return result(
        "Start-up: --help, --version and argument errors; the quick demo",
        lines,
        medians=medians,
        quick_demo_s=demo_s,
    )
