"""Run every benchmark (``benchmarks/bench_*.py``) and write their tables into BENCHMARKS.md.

Each benchmark module has ``main() -> dict`` returning ``{"title": str, "markdown": str, ...}``
(made by :func:`result`): its ratios are measured side by side in one run, since this kind of machine
is noisy.

    python benchmarks/run.py [--only store,extract] [--update BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import platform
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def result(title: str, lines: list[str], **data: Any) -> dict[str, Any]:
    """A benchmark's result: its section ``title``, its ``lines`` joined as the section's markdown and
    any measured ``data``; the markdown is printed too, so a run shows each table when it is done."""
    markdown = "\n".join(lines)
    print(markdown)
    return {"title": title, "markdown": markdown, **data}


def _machine() -> str:
    import os

    import torch

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", help="comma-separated benchmark names (e.g. store,extract)")
    parser.add_argument("--update", type=Path, help="write the results into this markdown file")
    args = parser.parse_args(argv)
    names = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"unknown benchmarks {unknown}; available: {names}")
        names = [n for n in names if n in wanted]
    sections = []
    for name in names:
        print(f"== benchmark {name}", flush=True)
        t0 = time.perf_counter()
        out = importlib.import_module(f"benchmarks.bench_{name}").main()
        took = time.perf_counter() - t0
        sections.append(
            f"## {out['title']}\n\n{out['markdown'].strip()}\n\n_(`bench_{name}.py`, {took:.0f} s)_\n"
        )
    if args.update:
        head = (
            "# Benchmarks\n\nWritten by `make bench` (`python benchmarks/run.py --update BENCHMARKS.md`) on "
            f"{dt.date.today().isoformat()}: {_machine()}. Ratios within a table were measured side by "
            "side in one run; absolute numbers on a shared machine vary by +-30-50 %.\n\n"
        )
        old = args.update.read_text() if args.update.exists() else ""
        kept = _sections(old)
        kept.update({s.splitlines()[0]: s for s in sections})
        args.update.write_text(head + "\n".join(kept.values()))
        print(f"updated {args.update}")
    return 0


def _sections(text: str) -> dict[str, str]:
    """Existing '## ' sections of the file, so a partial run (--only) keeps the others."""
    out: dict[str, str] = {}
    for chunk in text.split("\n## ")[1:]:
        body = "## " + chunk.rstrip() + "\n"
        out[body.splitlines()[0]] = body
    return out


if __name__ == "__main__":
    sys.exit(main())
