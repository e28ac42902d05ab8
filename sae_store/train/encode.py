"""Encoding activations with trained SAEs into the store's ``features`` group.

Per (layer, language, sample, feature): the mean and the max of the latent over the sample's tokens
of the chosen roles, and the fraction of those tokens where it is active (> 0), in all and per role
(``role_frac``, with each role's token count ``role_tokens``), from one pass over the latents. A
group encoded before the per-role arrays existed is not added to (``--overwrite`` encodes it
again). Work is done in
(layer, shard block) units (all languages), each flagged complete after its data, so encoding resumes
where it stopped and array tasks (each owning a contiguous run of blocks) run in parallel. Layers go
in groups whose SAEs fit ``EncodeConfig.sae_memory``, block by block within a group, so a block's
statistics file (one shard for all layers) is rewritten once per group rather than once per layer. The
group's attributes record which SAE produced each layer (folder, format, architecture, d_sae,
SHA-256 of the weights file) and the token roles. For an SAE that comes without held-out metrics
(pretrained: SAELens, sparsify, Gemma Scope), the first task also measures them
(:func:`~sae_store.train.metrics.held_out_metrics`: FVU, L0, dead fraction) on the layer's held-out
samples, the split ``sae-store train`` holds out, and records them as the layer's ``quality``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from sae_store.device import available_cores, resolve_device
from sae_store.errors import ConfigError, DataError, IncompleteError, SaeStoreError
from sae_store.faults import kill_point
from sae_store.progress import progress_bar
from sae_store.roles import TokenRole
from sae_store.store import ActivationStore, Block, task_blocks
from sae_store.store import schema as S
from sae_store.store.groups import create_features_group, delete_group
from sae_store.store.results import group_attrs, has_group, update_group_attrs
from sae_store.store.schema import (
    FEATURE_FRAC,
    FEATURE_MAX,
    FEATURE_MEAN,
    FEATURES,
    ROLE_FRAC,
    ROLE_TOKENS,
    TOKENS_USED,
)
from sae_store.train.config import DataConfig, EncodeConfig
from sae_store.train.data import StoreDataProvider
from sae_store.train.discovery import check_model
from sae_store.train.formats import LoadedSae, load_sae, sha256_file
from sae_store.train.metrics import held_out_metrics
from sae_store.train.sae import SparseAutoencoder
from sae_store.train.summary import TokenSummary, summarize_tokens

log = logging.getLogger(__name__)

#: Arrays written per (layer, block), in the order of :class:`~sae_store.train.summary.TokenSummary`.
_STATISTICS = (FEATURE_MEAN, FEATURE_MAX, FEATURE_FRAC, TOKENS_USED, ROLE_FRAC, ROLE_TOKENS)


class EncodeResult(NamedTuple):
    """What one ``encode`` call did."""

    encoded: int
    """(layer, language, block) units written by this call."""
    skipped: int
    """Units already complete."""
    layers: tuple[int, ...]


def sae_record(
    folder: Path, store_model: dict[str, Any] | None = None, loaded: LoadedSae | None = None
) -> dict[str, Any]:
    """Provenance of the SAE in ``folder``: where, which format and architecture, size, weights hash
    (and a warning when it names another model than ``store_model``); ``loaded`` is the SAE if it is
    loaded already."""
    loaded = loaded or load_sae(folder)
    check_model(loaded.cfg, store_model or {}, folder)
    return {
        "folder": str(Path(folder).resolve()),
        "format": loaded.format,
        "architecture": loaded.cfg.get("sae_store", {}).get("architecture", loaded.sae.architecture),
        "d_in": loaded.sae.d_in,
        "d_sae": loaded.sae.d_sae,
        "weights": loaded.weights_path.name,
        "sha256": sha256_file(loaded.weights_path),
    }


#: What ``--overwrite`` costs, said wherever it is advised.
_DISCARDS = "this discards the features encoded so far"


def _prepare_group(
    store: ActivationStore, records: dict[int, dict[str, Any]], roles: list[str], d_sae: int
) -> None:
    attrs = {
        "saes": {str(k): v for k, v in records.items()},
        "roles": roles,
        "d_sae": d_sae,
        "n_samples": store.layout.n_samples,
        "active": "latent > 0",
    }
    if create_features_group(store, d_sae, roles, attrs):
        return
    have = group_attrs(store, FEATURES)
    restart = f"start over with --overwrite ({_DISCARDS})"
    if have.get("n_samples") != store.layout.n_samples or have.get("d_sae") != d_sae:
        raise SaeStoreError(
            f"the store's features group holds {have.get('n_samples')} samples x {have.get('d_sae')} "
            f"features, but the store has {store.layout.n_samples} samples and the SAEs have {d_sae} "
            f"features; {restart}"
        )
    if list(have.get("roles", [])) != roles:
        raise ConfigError(
            f"the features group was encoded with roles {have.get('roles')}, not {roles}; pass "
            f"--roles {','.join(have.get('roles', []))} or {restart}"
        )
    saes = dict(have.get("saes", {}))
    for layer, rec in records.items():
        old = saes.get(str(layer))
        if old is not None and old["sha256"] != rec["sha256"]:
            raise SaeStoreError(
                f"layer {layer}'s features were encoded with another SAE ({old['folder']}, sha256 "
                f"{old['sha256'][:12]}...) than {rec['folder']} (sha256 {rec['sha256'][:12]}...); {restart}"
            )
    if any(str(layer) not in saes for layer in records):
        saes.update({str(k): v for k, v in records.items()})
        update_group_attrs(store, FEATURES, {"saes": saes})


def _refuse_without_roles(store: ActivationStore, layers: list[int], blocks: list[Block]) -> None:
    """Refuse to add to a features group encoded before the per-role arrays existed: the new units
    would have per-role statistics and the old ones none. A group with nothing left to encode for
    ``layers`` and ``blocks`` is left alone (nothing is written)."""
    if not has_group(store, FEATURES) or ROLE_FRAC in store.zarr_group(FEATURES):
        return
    done = store.read_flags(S.COMPLETE, group=FEATURES)
    rows = [store.layer_index(layer) for layer in layers]
    if all(done[rows, :, b.start : b.stop].all() for b in blocks):
        return
    raise SaeStoreError(
        f"the store's features group was encoded before per-role statistics ({ROLE_FRAC}, "
        f"{ROLE_TOKENS}) were stored, so it cannot be added to; encode it again with `sae-store encode "
        f"{store.path} --saes SAE_DIR --overwrite` ({_DISCARDS})"
    )


def _record_quality(
    store: ActivationStore,
    sae_dirs: Mapping[int, str | os.PathLike[str]],
    config: EncodeConfig,
    device: str,
    selected: int,
) -> None:
    """Held-out metrics of every layer's SAE that has none from training (not a ``sae_store`` folder)
    and none recorded yet, under ``saes[layer]["quality"]`` of the group's attributes; ``selected``
    is the number of token positions of the chosen roles (it bounds the evaluation batch)."""
    saes: dict[str, Any] = dict(group_attrs(store, FEATURES)["saes"])
    todo = [
        L for L in sorted(sae_dirs) if saes[str(L)]["format"] != "sae_store" and "quality" not in saes[str(L)]
    ]
    for layer in todo:
        # the samples `sae-store train` holds out (DataConfig's split), at most max_eval_tokens vectors
        data = DataConfig(
            layer=layer, roles=config.roles, batch_size=max(1, min(config.batch_tokens, selected // 4))
        )
        try:
            provider = StoreDataProvider(store, data)
        except (IncompleteError, DataError) as e:
            log.warning(
                "held-out metrics of layer %d's SAE not measured (rerun encode when fixed): %s", layer, e
            )
            continue
        log.info(
            "measuring layer %d's SAE on its held-out samples (at most %d tokens)",
            layer,
            data.max_eval_tokens,
        )
        sae = load_sae(sae_dirs[layer], device=device).sae
        metrics = held_out_metrics(sae, provider.validation_batches(), device).metrics
        saes[str(layer)] = {
            **saes[str(layer)],
            "quality": {**metrics, "held_out_samples": provider.summary.val_samples},
        }
    if todo:
        update_group_attrs(store, FEATURES, {"saes": saes})


def encode_features(
    store: ActivationStore,
    sae_dirs: Mapping[int, str | os.PathLike[str]],
    config: EncodeConfig | None = None,
    *,
    task_index: int = 0,
    task_count: int = 1,
    restart: bool = False,
    progress: bool = True,
) -> EncodeResult:
    """Encode the activations of each layer in ``sae_dirs`` (layer -> SAE folder) into ``features``.

    Array task ``task_index`` of ``task_count`` handles its contiguous run of shard blocks, for
    every layer given and every language. ``restart`` deletes the group first (single process only).

    Raises
    ------
    SaeStoreError
        A layer is not in the store; the SAEs disagree in size with each other, the store or the
        existing group; a layer was encoded before with another SAE; the group was encoded before the
        per-role arrays existed and something is left to encode (``restart`` encodes it again).
    IncompleteError
        Activations of the task's blocks are not complete for a layer.
    """
    config = config or EncodeConfig()
    device = str(resolve_device(config.device))
    if not sae_dirs:
        raise SaeStoreError("no SAEs to encode with; train some with `sae-store train` or pass --saes")
    layers = sorted(sae_dirs)
    for layer in layers:
        store.layer_index(layer)
    records = {layer: sae_record(Path(sae_dirs[layer]), store.attrs.get("model", {})) for layer in layers}
    sizes = {r["d_sae"] for r in records.values()}
    if len(sizes) != 1:
        raise SaeStoreError(
            "every layer's SAE must have the same d_sae (the features group has one feature dimension); got "
            + ", ".join(f"layer {k}: {r['d_sae']}" for k, r in records.items())
        )
    bad = {k: r["d_in"] for k, r in records.items() if r["d_in"] != store.layout.hidden_size}
    if bad:
        raise SaeStoreError(
            f"SAEs with d_in {bad} do not fit the store's hidden size {store.layout.hidden_size}"
        )
    blocks = task_blocks(store.blocks, task_index, task_count)
    flags = store.read_flags()
    for layer in layers:
        li = store.layer_index(layer)
        todo = [f"{b.start}:{b.stop}" for b in blocks if not flags[li, :, b.start : b.stop].all()]
        if todo:
            raise IncompleteError(
                f"activations of layer {layer} are not complete for samples {', '.join(todo)} (some "
                "language); finish extraction first (see `sae-store status`)"
            )
    if restart:
        delete_group(store, FEATURES)
    else:
        _refuse_without_roles(store, layers, blocks)
    _prepare_group(store, records, list(config.roles), sizes.pop())
    roles = np.asarray(store.array(S.TOKEN_ROLE)[...])
    codes = [int(TokenRole[r.upper()]) for r in config.roles]
    if task_index == 0:
        _record_quality(store, sae_dirs, config, device, int(np.isin(roles, codes).sum()))
    done = store.read_flags(S.COMPLETE, group=FEATURES)
    # layers in groups whose SAEs fit the memory budget; within a group, block by block, so each block's
    # shard is written once per group (all its layers in one call) rather than once per layer
    groups = _layer_groups(store, layers, records, config.sae_memory)
    group_of = {layer: i for i, group in enumerate(groups) for layer in group}
    units = [(layer, b) for layer in layers for b in blocks]
    todo_units = [
        (layer, b)
        for group in groups
        for b in blocks
        for layer in group
        if not done[store.layer_index(layer), :, b.start : b.stop].all()
    ]
    n_lang = len(store.layout.languages)
    result = EncodeResult(n_lang * len(todo_units), n_lang * (len(units) - len(todo_units)), tuple(layers))
    if not todo_units:  # (a group encoded before the per-role arrays has nothing to open for them)
        return result
    out = {name: store.array(name, FEATURES, mode="r+") for name in (*_STATISTICS, S.COMPLETE)}
    loaded: dict[int, SparseAutoencoder] = {}
    pending: list[tuple[int, list[TokenSummary]]] = []  # (layer index, stats per language)
    # chunks are decoded on `readers`; the next unit is read on `ahead` while the SAE encodes this one
    with (
        ThreadPoolExecutor(available_cores(), thread_name_prefix="sae-encode-read") as readers,
        ThreadPoolExecutor(1, thread_name_prefix="sae-encode-ahead") as ahead,
    ):
        reads = [ahead.submit(_read, store, u, readers) for u in todo_units[:1]]
        for n, (layer, b) in enumerate(
            progress_bar(todo_units, desc="encode", unit="layer-block", enabled=progress)
        ):
            if n + 1 < len(todo_units):
                reads.append(ahead.submit(_read, store, todo_units[n + 1], readers))
            if layer not in loaded:  # the previous group's SAEs are freed
                loaded = {k: v for k, v in loaded.items() if group_of[k] == group_of[layer]}
                loaded[layer] = load_sae(sae_dirs[layer], device=device).sae
            acts = reads.pop(0).result()
            stats = [
                summarize_tokens(
                    loaded[layer],
                    acts[gi],
                    roles[gi, b.start : b.stop],
                    codes,
                    batch_tokens=config.batch_tokens,
                    device=device,
                )
                for gi in range(n_lang)
            ]
            pending.append((store.layer_index(layer), stats))
            nxt = todo_units[n + 1] if n + 1 < len(todo_units) else None
            if (
                nxt is None
                or nxt[1] != b
                or group_of[nxt[0]] != group_of[layer]
                or store.layer_index(nxt[0]) != pending[-1][0] + 1
            ):
                _flush(out, pending, b)
                pending = []
    return result


def _layer_groups(
    store: ActivationStore, layers: list[int], records: dict[int, dict[str, Any]], budget: int
) -> list[list[int]]:
    """``layers`` in runs of consecutive store layers whose SAEs' weights fit ``budget`` bytes together
    (at least one layer per run)."""
    groups: list[list[int]] = []
    used = 0
    for layer in layers:
        size = 4 * (2 * records[layer]["d_in"] * records[layer]["d_sae"] + 2 * records[layer]["d_sae"])
        last = groups[-1] if groups else []
        adjacent = bool(last) and store.layer_index(layer) == store.layer_index(last[-1]) + 1
        if adjacent and used + size <= budget:
            last.append(layer)
            used += size
        else:
            groups.append([layer])
            used = size
    return groups


def _flush(out: dict[str, Any], pending: list[tuple[int, list[TokenSummary]]], b: Block) -> None:
    """Write the statistics of consecutive store layers ``pending`` for block ``b`` in one call per
    array (one rewrite of the block's shard), then their complete flags."""
    first, stop = pending[0][0], pending[-1][0] + 1
    for k, name in enumerate(_STATISTICS):
        out[name][first:stop, :, b.start : b.stop] = np.stack(
            [np.stack([s[k] for s in stats]) for _, stats in pending]
        )
    kill_point("encode.features_written")
    out[S.COMPLETE][first:stop, :, b.start : b.stop] = True
    kill_point("encode.flags_written")


def _read(store: ActivationStore, unit: tuple[int, Block], pool: Executor) -> np.ndarray:
    """Activations ``[language, sample, token, hidden]`` of one (layer, block)."""
    layer, b = unit
    lay = store.layout
    acts = np.empty((len(lay.languages), b.stop - b.start, lay.max_tokens, lay.hidden_size), np.float32)
    for gi, lang in enumerate(lay.languages):
        store.read_activations(layer, lang, b.start, b.stop, out=acts[gi], pool=pool)
    return acts
