"""``sae-store verify --repair``: clear exactly what :func:`~sae_store.store.verify.verify_store` found
damaged, so that the command that wrote it redoes it - and say what was cleared and which command.

- a file of the root's per-block arrays: deleted, and the ``complete`` flags of the blocks it held
  cleared (under claims of those blocks, so never while an extraction writes them); ``extract`` redoes
  those blocks and nothing else;
- a file of ``features`` or ``generation``: the same with the group's own flags; ``encode`` or
  ``caption`` redoes them;
- a damaged result (a group below ``analysis``) or a group's damaged metadata: the whole group is
  removed; ``analyze`` or ``intervene`` (or ``encode``/``caption``) writes it again;
- files made by ``init`` (coordinates, sample labels, the root's metadata): nothing can be redone in
  place; the report says how to make a new store.
"""

from __future__ import annotations

from sae_store.store import schema as S
from sae_store.store.core import ActivationStore
from sae_store.store.groups import delete_group
from sae_store.store.lock import register_extraction
from sae_store.store.verify_report import Problem, VerifyReport


def _flag_selection(store: ActivationStore, dims: tuple[str, ...], p: Problem) -> tuple[slice, ...]:
    """The part of a ``complete`` array over ``dims`` that problem ``p``'s file held."""
    out = []
    for d in dims:
        if d == S.LAYER and p.region.layers is not None:
            idx = [store.layer_index(x) for x in p.region.layers]
            out.append(slice(min(idx), max(idx) + 1))
        elif d == S.LANGUAGE and p.region.languages is not None:
            idx = [store.language_index(x) for x in p.region.languages]
            out.append(slice(min(idx), max(idx) + 1))
        elif d == S.SAMPLE and p.region.samples is not None:
            out.append(slice(*p.region.samples))
        else:
            out.append(slice(None))
    return tuple(out)


def _clear_block(store: ActivationStore, p: Problem) -> str:
    """Delete ``p``'s file (if damaged) and clear its group's flags over what it held."""
    group, _, name = p.array.rpartition("/")
    (store.path / p.file).unlink(missing_ok=True)
    flag_key = f"{group}/{S.COMPLETE}" if group else S.COMPLETE
    if name != S.COMPLETE and (store.path / flag_key / "zarr.json").is_file():
        flags = store.array(S.COMPLETE, group or None, mode="r+")
        dims = tuple(str(d) for d in getattr(flags.metadata, "dimension_names", None) or ())
        flags[_flag_selection(store, dims, p)] = False
    return f"cleared {p.file} ({p.region.describe()}); `{p.redo}` redoes it"


def repair_store(
    store: ActivationStore, report: VerifyReport, *, command: str = "verify --repair"
) -> list[str]:
    """Clear what ``report`` found damaged (see the module); returns what was done, as lines for people."""
    if not any(p.redoable and not p.notice for p in report.problems):
        return []
    store.require_writable()
    done: list[str] = []
    groups = sorted({p.array.rpartition("/")[0] for p in report.problems if p.redoable and p.whole_group})
    groups = [g for g in groups if g and not any(g.startswith(f"{o}/") for o in groups)]
    for group in groups:
        redo = next(p.redo for p in report.problems if p.array.startswith(f"{group}/") and p.redo)
        delete_group(store, group)
        done.append(f"removed the group {group} (a damaged file or its metadata); `{redo}` writes it again")
    blocks = [
        p
        for p in report.problems
        if p.redoable and not p.notice and not p.whole_group and p.region.samples is not None
        and not any(p.array.startswith(f"{g}/") for g in groups)
    ]  # fmt: skip
    root = [p for p in blocks if "/" not in p.array]
    spb = store.layout.samples_per_shard
    claimed = sorted({p.region.samples[0] // spb for p in root if p.region.samples is not None})
    with register_extraction(store.path, claimed, command=command):
        done += [_clear_block(store, p) for p in blocks]
    return done
