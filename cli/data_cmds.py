"""Sub-commands ``prepare`` and ``make-demo-data``: building the samples table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sae_store.data.config import DemoDataConfig, PrepareConfig

from .options import add_settings, build
from .parser import add_command, show


def _prepare(args: argparse.Namespace) -> int:
    """Build samples.csv (one row per image, gender-labelled) from a captions CSV.

    Group a bilingual captions CSV by image, label gender from both languages, check every image, optionally
    subsample (stratified by gender) and write samples.csv and prepare_report.json.
    """
    config = build(args, PrepareConfig)
    from sae_store.data.prepare import prepare_samples

    result = prepare_samples(args.captions, args.images, args.out, config)
    report = result.report
    kept = ", ".join(f"{g} {n}" for g, n in report["label_counts_after"].items() if n)
    rejected = ", ".join(f"{r} {n}" for r, n in report["rejected_counts"].items()) or "none"
    lines = [
        f"kept {report['samples_written']} samples: {kept}",
        f"rejected {len(report['rejected_rows'])} rows: {rejected}",
    ]
    duplicates = report["rejected_counts"].get("duplicate row", 0)
    if duplicates:
        lines.append(
            f"{duplicates} rows repeat an earlier row exactly: the first of each was kept, the repeats left "
            f"out (their row numbers are in {result.report_path})"
        )
    if report["excluded_unlabelled"]:
        n_excluded = len(report["excluded_unlabelled"])
        lines.append(f"excluded {n_excluded} ambiguous/unknown images (--keep-unlabelled keeps them)")
    lines += [f"samples: {result.samples_path}", f"report:  {result.report_path}"]
    data = {
        "samples": result.samples_path,
        "report": result.report_path,
        "kept": report["label_counts_after"],
        "rejected": report["rejected_counts"],
        "excluded_unlabelled": len(report["excluded_unlabelled"]),
    }
    show(args, data, lines)
    return 0


def _make_demo_data(args: argparse.Namespace) -> int:
    """Write a small bilingual demo captions CSV with images.

    Write DIR/captions.csv and DIR/images/*.png: deterministic demo data with a planted visual gender cue and
    a few deliberate faults.
    """
    config = build(args, DemoDataConfig)
    from sae_store.data.demo import DEMO_CAPTIONS_FILE, DEMO_IMAGES_DIR, make_demo_data

    out = make_demo_data(args.out, n_images=config.n_images, seed=config.seed)
    captions, images = out / DEMO_CAPTIONS_FILE, out / DEMO_IMAGES_DIR
    show(args, {"captions": captions, "images": images}, [f"captions: {captions}", f"images:   {images}"])
    return 0


def _add_prepare(subparsers: Any) -> None:
    p = add_command(subparsers, "prepare", _prepare)
    p.add_argument(
        "--captions",
        required=True,
        type=Path,
        metavar="CSV",
        help="image,en_caption,ar_caption CSV (required)",
    )
    p.add_argument(
        "--images",
        required=True,
        type=Path,
        metavar="DIR",
        help="folder the image paths are relative to (required)",
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (required)")
    add_settings(p, PrepareConfig)


def _add_make_demo_data(subparsers: Any) -> None:
    p = add_command(subparsers, "make-demo-data", _make_demo_data)
    p.add_argument("out", type=Path, metavar="DIR", help="output folder")
    add_settings(p, DemoDataConfig)


COMMANDS = {"prepare": _add_prepare, "make-demo-data": _add_make_demo_data}
