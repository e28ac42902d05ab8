"""``sae-store du``, ``status``, ``verify`` and ``migrate``: size, completeness, soundness, upgrades."""

from __future__ import annotations

import argparse
from typing import Any

from .options import add_quotas, add_store, quotas_from_args
from .parser import add_command, natural, show


def _du(args: argparse.Namespace) -> int:
    """Bytes, files, compression and projected size of a store."""
    quota, inodes = quotas_from_args(args)
    from sae_store.store import open_store, store_usage
    from sae_store.store.usage import quota_problems, render_usage
    from sae_store.store.verify import recorded_nonfinite

    store = open_store(args.store)
    usage = store_usage(store)
    problems = quota_problems(usage, quota=quota, inode_quota=inodes)
    nonfinite = recorded_nonfinite(store)
    lines = [render_usage(usage), _nonfinite_line(nonfinite), *(f"QUOTA: {p}" for p in problems)]
    show(args, {**usage.to_dict(), "problems": problems, "nonfinite": nonfinite}, lines)
    return 1 if problems else 0


def _nonfinite_line(counts: dict[int, int]) -> str:
    if not counts:
        return "non-finite values recorded: none"
    return "non-finite values recorded: " + ", ".join(f"layer {k}: {n}" for k, n in counts.items())


def _status(args: argparse.Namespace) -> int:
    """Completion grid (layer x language x shard block).

    Show the completion grid, what remains to do, the non-finite values recorded and the shard blocks claimed
    by extractions (with each holder's state and heartbeat age); exit 1 if a flagged block lacks its files or
    an append is running or was left unfinished (with the command that finishes or undoes it).
    """
    from sae_store.store import completion, open_store
    from sae_store.store import schema as S
    from sae_store.store.lock import held_claims
    from sae_store.store.verify import check_flags, recorded_nonfinite, verify_store

    store = open_store(args.store)
    held = held_claims(store.path)
    check = verify_store(store, progress=not args.json) if args.verify else check_flags(store)
    flags_readable = not any(p.array == S.COMPLETE for p in check.problems)
    result = completion(store) if flags_readable else None
    nonfinite = recorded_nonfinite(store)
    lines = []
    if result is not None:
        lines.append(result.render())
        for item in result.remaining()[: args.max_lines]:
            ranges = ", ".join(f"{a}:{b}" for a, b in item["blocks"])
            lines.append(f"to do: layer {item['layer']} {item['language']}: samples {ranges}")
    lines.append(_nonfinite_line(nonfinite))
    lines += [f"claim: {c.describe()}" for c in held]
    if args.verify or not check.ok or check.problems:  # an interrupted append, damage, or notices
        lines.append(check.render())
    out = result.to_dict() if result is not None else {}
    claims = [c.to_dict() for c in held]
    show(args, {**out, "nonfinite": nonfinite, "claims": claims, "check": check.to_dict()}, lines)
    return 0 if check.ok else 1


def _verify(args: argparse.Namespace) -> int:
    """Decode every stored file; name damaged ones and how to redo them (exit 1 if any).

    Decode every chunk file of every array, groups included (each chunk's CRC32C catches any changed byte),
    check that every file a flagged block needs exists and that coordinates and recorded statistics agree
    with the data, and count NaN/inf values and values beyond float16's range per layer.
    """
    from sae_store.store import open_store
    from sae_store.store.checksums import arrays_without_checksums
    from sae_store.store.migrate import migrate_store
    from sae_store.store.repair import repair_store
    from sae_store.store.verify import verify_store

    store = open_store(args.store)
    report = verify_store(store, progress=not args.json)
    lines = [report.render()]
    data: dict[str, Any] = report.to_dict()
    without = arrays_without_checksums(store.path)
    data["arrays_without_checksums"] = without
    if without and not args.add_checksums:
        lines.append(
            f"{len(without)} arrays were written before chunks carried checksums "
            f"({', '.join(without[:4])}{' ...' if len(without) > 4 else ''}): a changed byte there may "
            f"go unnoticed; `sae-store verify {store.path} --add-checksums` adds them"
        )
    if args.repair and not report.ok:
        done = repair_store(store, report)
        data["repaired"] = done
        lines += done or ["nothing was cleared: no command redoes what is damaged (see above)"]
    if args.add_checksums:
        if any(not p.notice for p in report.problems):
            lines.append(
                "checksums not added: repair the damage first (--repair), then run --add-checksums again"
            )
            show(args, data, lines)
            return 1
        data["added_checksums"] = list(migrate_store(store.path, progress=not args.json))
        lines += data["added_checksums"]
    show(args, data, lines)
    return 0 if report.ok else 1


def _migrate(args: argparse.Namespace) -> int:
    """Upgrade a store of an older schema version in place (safe to rerun after a kill).

    Upgrade a schema version 1 or 2 store to the current version in place: the small per-block arrays (and
    the captions) are rebuilt with fewer files, integer label codes are added in every group and attributes
    updated; activations are not recompressed. Results written before version 3 count as stale until rerun.
    Every array written before chunks carried CRC32C checksums gets them (in stores of the current version
    too): shards keep their compressed chunks, each followed by its checksum. Killed at any point, running
    it again finishes the job. No extraction or append may run meanwhile.
    """
    from sae_store.store.migrate import migrate_store

    lines = list(migrate_store(args.store, progress=not args.json))
    show(args, {"store": args.store, "steps": lines}, lines)
    return 0


def _add_du(subparsers: Any) -> None:
    p = add_command(subparsers, "du", _du)
    add_store(p)
    add_quotas(p)


def _add_status(subparsers: Any) -> None:
    p = add_command(subparsers, "status", _status)
    add_store(p)
    p.add_argument(
        "--max-lines",
        type=natural,
        default=20,
        metavar="N",
        help="list at most this many unfinished items (default: 20)",
    )
    p.add_argument("--verify", action="store_true", help="also decode every stored file (as `verify` does)")


def _add_verify(subparsers: Any) -> None:
    p = add_command(subparsers, "verify", _verify)
    add_store(p)
    p.add_argument(
        "--repair",
        action="store_true",
        help="delete the damaged files and clear the completion flags of exactly the blocks they held (a "
        "damaged result: its group), and say which command redoes them",
    )
    p.add_argument(
        "--add-checksums",
        action="store_true",
        help="give every array written before chunks carried CRC32C checksums its checksums, once the store "
        "verifies (the same as `sae-store migrate`; activations are not recompressed)",
    )


def _add_migrate(subparsers: Any) -> None:
    p = add_command(subparsers, "migrate", _migrate)
    add_store(p)


COMMANDS = {"du": _add_du, "status": _add_status, "verify": _add_verify, "migrate": _add_migrate}
