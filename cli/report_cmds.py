"""``sae-store report``: the interactive HTML report, the Markdown report with PNGs, and summary.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from sae_store.store.usage import parse_count, parse_size


def _report(args: argparse.Namespace) -> int:
    # imported here: HoloViews, Panel and Bokeh take seconds to import, which every other
    # sub-command would pay when the parser is built
    from sae_store.report import build_report, load_inputs

    inputs = load_inputs(
        args.store,
        saes_dir=args.saes,
        results_dir=args.results,
        images_dir=args.images,
        quota=parse_size(args.quota) if args.quota is not None else None,
        inode_quota=parse_count(args.inode_quota) if args.inode_quota is not None else None,
    )
    result = build_report(inputs, args.out)
    not_run = [key for key, status in result.sections.items() if status == "not run"]
    print(f"report:   {result.html}")
    print(f"markdown: {result.markdown} ({len(result.figures)} PNG figures)")
    print(f"summary:  {result.summary}")
    if not_run:
        print(f"not run yet: {', '.join(not_run)} (the report lists the commands)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="write report.html (interactive, works offline), report.md with PNGs, and summary.json",
        description="Turn a store and its SAE and analysis results into a self-contained interactive "
        "HTML report, a Markdown report with static PNG figures and a summary.json. Steps that have "
        "not run yet are listed with the commands that would run them.",
    )
    p.add_argument("store", type=Path, help="path of the activation store")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--saes", type=Path, metavar="DIR", help="folder of trained SAEs (layer_<L>/ folders)")
    p.add_argument(
        "--results", type=Path, metavar="DIR", help="folder of analysis and intervention JSON results"
    )
    p.add_argument(
        "--images", type=Path, metavar="DIR", help="images folder (default: the store's images_dir)"
    )
    p.add_argument("--quota", help="byte quota to compare the projected store size with, e.g. 500G")
    p.add_argument("--inode-quota", help="file-count quota to compare the projected file count with")
    p.set_defaults(func=_report)
