"""``sae-store du``, ``status`` and ``migrate``: how big a store is, how complete, and upgrading it."""

from __future__ import annotations

import argparse
import json

from sae_store.store import completion, open_store, store_usage
from sae_store.store.usage import parse_count, parse_size, quota_problems, render_usage


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


def _migrate(args: argparse.Namespace) -> int:
    from sae_store.store.migrate import migrate_store

    for line in migrate_store(args.store):
        print(line)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("du", help="bytes, files, compression and projected size of a store")
    p.add_argument("store", help="path of the activation store")
    p.add_argument("--quota", help="byte quota, e.g. 500G or 2TiB; exit 1 if the projection exceeds it")
    p.add_argument("--inode-quota", help="file-count quota; exit 1 if the projection exceeds it")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=_du)

    p = subparsers.add_parser("status", help="completion grid (layer x language x shard block)")
    p.add_argument("store", help="path of the activation store")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.add_argument("--max-lines", type=int, default=20, help="list at most this many unfinished items")
    p.set_defaults(func=_status)

    p = subparsers.add_parser(
        "migrate",
        help="upgrade a store of an older schema version in place (safe to rerun after a kill)",
        description="Upgrade a schema version 1 store to the current version in place: the small "
        "per-block arrays are rebuilt with fewer files, integer label codes and attributes are added; "
        "activations are not rewritten. Killed at any point, running it again finishes the job. "
        "No extraction or append may run meanwhile.",
    )
    p.add_argument("store", help="path of the activation store")
    p.set_defaults(func=_migrate)
