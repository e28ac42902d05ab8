"""Sub-commands ``prepare`` and ``make-demo-data``: building the samples table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sae_store.data.config import PrepareConfig

from .options import add_command, add_settings, build


def _prepare(args: argparse.Namespace) -> int:
    """Build samples.csv (one row per image, gender-labelled) from a captions CSV.

    Group a bilingual captions CSV by image, label gender from both languages, check every image, optionally
    subsample (stratified by gender) and write samples.csv and prepare_report.json.
    """
    from sae_store.data.prepare import prepare_samples

    result = prepare_samples(args.captions, args.images, args.out, build(args, PrepareConfig))
    report = result.report
    kept = ", ".join(f"{g} {n}" for g, n in report["label_counts_after"].items() if n)
    rejected = ", ".join(f"{r} {n}" for r, n in report["rejected_counts"].items()) or "none"
    print(f"kept {report['samples_written']} samples: {kept}")
    print(f"rejected {len(report['rejected_rows'])} rows: {rejected}")
    duplicates = report["rejected_counts"].get("duplicate row", 0)
    if duplicates:
        print(
            f"{duplicates} rows repeat an earlier row exactly: the first of each was kept, the repeats left "
            f"out (their row numbers are in {result.report_path})"
        )
    if report["excluded_unlabelled"]:
        n_excluded = len(report["excluded_unlabelled"])
        print(f"excluded {n_excluded} ambiguous/unknown images (--keep-unlabelled keeps them)")
    print(f"samples: {result.samples_path}")
    print(f"report:  {result.report_path}")
    return 0


def _make_demo_data(args: argparse.Namespace) -> int:
    """Write a small bilingual demo captions CSV with images.

    Write DIR/captions.csv and DIR/images/*.png: deterministic demo data with a planted visual gender cue and
    a few deliberate faults.
    """
    from sae_store.data.demo import DEMO_CAPTIONS_FILE, DEMO_IMAGES_DIR, make_demo_data

    out = make_demo_data(args.out, n_images=args.n_images, seed=args.seed)
    print(f"captions: {out / DEMO_CAPTIONS_FILE}")
    print(f"images:   {out / DEMO_IMAGES_DIR}")
    return 0


def _add_prepare(subparsers: Any) -> None:
    p = add_command(subparsers, "prepare", _prepare)
    p.add_argument(
        "--captions", required=True, type=Path, metavar="CSV", help="image,en_caption,ar_caption CSV"
    )
    p.add_argument(
        "--images", required=True, type=Path, metavar="DIR", help="folder the image paths are relative to"
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    add_settings(p, PrepareConfig)


def _add_make_demo_data(subparsers: Any) -> None:
    p = add_command(subparsers, "make-demo-data", _make_demo_data)
    p.add_argument("out", type=Path, metavar="DIR", help="output folder")
    p.add_argument("--n-images", type=int, default=48, metavar="N", help="number of images (default: 48)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed (default: 0)")


COMMANDS = {"prepare": _add_prepare, "make-demo-data": _add_make_demo_data}
