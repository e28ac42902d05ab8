"""``sae-store report``: the interactive HTML report, the Markdown report with PNGs, and summary.json."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .options import add_images, add_quotas, add_results, add_saes, add_store, quotas_from_args
from .parser import add_command, show


def _report(args: argparse.Namespace) -> int:
    """Write report.html (interactive, works offline), report.md with PNGs, and summary.json.

    Turn a store and its SAE and analysis results into a self-contained interactive HTML report, a Markdown
    report with static PNG figures and a summary.json. Steps that have not run yet are listed with the
    commands that would run them.
    """
    quota, inode_quota = quotas_from_args(args)
    # imported here: HoloViews, Panel and Bokeh take seconds to import
    from sae_store.report import build_report, load_inputs

    inputs = load_inputs(
        args.store,
        saes_dir=args.saes,
        results_dir=args.results,
        images_dir=args.images,
        quota=quota,
        inode_quota=inode_quota,
    )
    result = build_report(inputs, args.out)
    not_run = [key for key, status in result.sections.items() if status == "not run"]
    lines = [
        f"report:   {result.html}",
        f"markdown: {result.markdown} ({len(result.figures)} PNG figures)",
        f"summary:  {result.summary}",
    ]
    if not_run:
        lines.append(f"not run yet: {', '.join(not_run)} (the report lists the commands)")
    data = {"html": result.html, "markdown": result.markdown, "summary": result.summary,
            "figures": len(result.figures), "not_run": not_run}  # fmt: skip
    show(args, data, lines)
    return 0


def _add(subparsers: Any) -> None:
    p = add_command(subparsers, "report", _report)
    add_store(p)
    p.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="output folder, created if needed (required)"
    )
    add_saes(p, required=False)
    add_results(p, "folder of analysis and intervention JSON results")
    add_images(p)
    add_quotas(p)


COMMANDS = {"report": _add}
