"""``sae-store report``: the interactive HTML report, the Markdown report with PNGs, and summary.json."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .options import add_command, add_images, add_quotas, add_saes, quotas_from_args


def _report(args: argparse.Namespace) -> int:
    """Write report.html (interactive, works offline), report.md with PNGs, and summary.json.

    Turn a store and its SAE and analysis results into a self-contained interactive HTML report, a Markdown
    report with static PNG figures and a summary.json. Steps that have not run yet are listed with the
    commands that would run them.
    """
    # imported here: HoloViews, Panel and Bokeh take seconds to import, which every other
    # sub-command would pay when the parser is built
    from sae_store.report import build_report, load_inputs

    quota, inode_quota = quotas_from_args(args)
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
    print(f"report:   {result.html}")
    print(f"markdown: {result.markdown} ({len(result.figures)} PNG figures)")
    print(f"summary:  {result.summary}")
    if not_run:
        print(f"not run yet: {', '.join(not_run)} (the report lists the commands)")
    return 0


def add_results(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--results",
        type=Path,
        metavar="DIR",
        help="folder of analysis and intervention JSON results (default: results/ beside the store)",
    )


def _add(subparsers: Any) -> None:
    p = add_command(subparsers, "report", _report)
    p.add_argument("store", type=Path, help="path of the activation store")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created if needed)")
    add_saes(p, required=False, what=" (default: saes/ beside the store)")
    add_results(p)
    add_images(p)
    add_quotas(p)


COMMANDS = {"report": _add}
