"""``sae-store du`` and ``sae-store status``: how big a store is and how complete."""

from __future__ import annotations

import argparse
import json

from sae_store.store import completion, open_store, store_usage
from sae_store.store.usage import parse_count, parse_size, quota_problems, render_usage

from .options import add_json


def _du(args: argparse.Namespace) -> int:
    quota = parse_size(args.quota) if args.quota is not None else None
    inodes = parse_count(args.inode_quota) if args.inode_quota is not None else None
    usage = store_usage(open_store(args.store))
    problems = quota_problems(usage, quota=quota, inode_quota=inodes)
    if args.json:
        print(json.dumps({**usage.to_dict(), "problems": problems}, indent=2))
    else:
        print(render_usage(usage))
        for p in problems:
            print(f"QUOTA: {p}")
    return 1 if problems else 0


def _status(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    result = completion(store)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.render())
        for item in result.remaining()[: args.max_lines]:
            ranges = ", ".join(f"{a}:{b}" for a, b in item["blocks"])
            print(f"to do: layer {item['layer']} {item['language']}: samples {ranges}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("du", help="bytes, files, compression and projected size of a store")
    p.add_argument("store", help="path of the activation store")
    p.add_argument(
        "--quota", metavar="SIZE", help="byte quota, e.g. 500G or 2TiB; exit 1 if the projection exceeds it"
    )
    p.add_argument(
        "--inode-quota", metavar="N", help="file-count quota, e.g. 1e6; exit 1 if the projection exceeds it"
    )
    add_json(p)
    p.set_defaults(func=_du)

    p = subparsers.add_parser("status", help="completion grid (layer x language x shard block)")
    p.add_argument("store", help="path of the activation store")
    add_json(p)
    p.add_argument(
        "--max-lines", type=int, default=20, metavar="N", help="list at most this many unfinished items"
    )
    p.set_defaults(func=_status)
