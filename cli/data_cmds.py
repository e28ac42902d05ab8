"""Sub-commands ``prepare`` and ``make-demo-data``: building the samples table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sae_store.data.demo import DEMO_CAPTIONS_FILE, DEMO_IMAGES_DIR, make_demo_data
from sae_store.data.prepare import prepare_samples


def register(subparsers: Any) -> None:
    """Add the data sub-commands to the parser's ``subparsers``."""
    p = subparsers.add_parser(
        "prepare",
        help="build samples.csv (one row per image, gender-labelled) from a captions CSV",
        description="Group a bilingual captions CSV by image, label gender from both languages, "
        "check every image, optionally subsample (stratified by gender) and write samples.csv "
        "and prepare_report.json.",
    )
    p.add_argument(
        "--captions", required=True, type=Path, metavar="CSV", help="image,en_caption,ar_caption CSV"
    )
    p.add_argument(
        "--images", required=True, type=Path, metavar="DIR", help="folder the image paths are relative to"
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument("--num-samples", type=int, metavar="N", help="keep N images, stratified by gender")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="subsample seed (default 0)")
    p.add_argument(
        "--gender-column", metavar="NAME", help="use this CSV column (male/female/m/f/man/woman) as the label"
    )
    p.add_argument(
        "--keep-unlabelled", action="store_true", help="also keep images labelled ambiguous or unknown"
    )
    p.set_defaults(func=_cmd_prepare)

    d = subparsers.add_parser(
        "make-demo-data",
        help="write a small bilingual demo captions CSV with images",
        description="Write DIR/captions.csv and DIR/images/*.png: deterministic demo data with a "
        "planted visual gender cue and a few deliberate faults.",
    )
    d.add_argument("out", type=Path, metavar="DIR", help="output folder")
    d.add_argument("--n-images", type=int, default=48, metavar="N", help="number of images (default 48)")
    d.add_argument("--seed", type=int, default=0, metavar="S", help="seed (default 0)")
    d.set_defaults(func=_cmd_make_demo_data)


def _cmd_prepare(args: argparse.Namespace) -> int:
    result = prepare_samples(
        args.captions,
        args.images,
        args.out,
        num_samples=args.num_samples,
        seed=args.seed,
        gender_column=args.gender_column,
        keep_unlabelled=args.keep_unlabelled,
    )
    report = result.report
    kept = ", ".join(f"{g} {n}" for g, n in report["label_counts_after"].items() if n)
    rejected = ", ".join(f"{r} {n}" for r, n in report["rejected_counts"].items()) or "none"
    print(f"kept {report['samples_written']} samples: {kept}")
    print(f"rejected {len(report['rejected_rows'])} rows: {rejected}")
    if report["excluded_unlabelled"]:
        n_excluded = len(report["excluded_unlabelled"])
        print(f"excluded {n_excluded} ambiguous/unknown images (--keep-unlabelled keeps them)")
    print(f"samples: {result.samples_path}")
    print(f"report:  {result.report_path}")
    return 0


def _cmd_make_demo_data(args: argparse.Namespace) -> int:
    out = make_demo_data(args.out, n_images=args.n_images, seed=args.seed)
    print(f"captions: {out / DEMO_CAPTIONS_FILE}")
    print(f"images:   {out / DEMO_IMAGES_DIR}")
    return 0
