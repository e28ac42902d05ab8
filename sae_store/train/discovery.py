"""Finding the SAE of each layer in a folder of SAEs: ours, SAELens, sparsify, Gemma Scope (2).

Every command that takes ``--saes`` resolves it here. The value is either a folder or a path
pattern with ``{L}`` standing for the layer number (shell-style wildcards allowed elsewhere)::

    saes/                                             layer_<L>/ folders (sae-store train, SAELens)
    sparsify-run/                                     layers.<L>/ folders (sparsify checkpoints)
    gemma-scope-2b-pt-res/layer_{L}/width_16k/average_l0_71        Gemma Scope
    gemma-scope-2-4b-it-res/resid_post/layer_{L}_width_16k_l0_medium   Gemma Scope 2

A plain folder is searched with the patterns of :data:`DEFAULT_PATTERNS`, which cover the layouts
as published (SAELens uploads' ``blocks.<L>.hook_resid_post/``, sparsify's ``layers.<L>/`` and, on
Gemma 3's VLM, ``language_model.layers.<L>/``). When a layer holds several SAEs further down (Gemma
Scope's widths and sparsities, whose L0 numbers differ from layer to layer), a choice after ``#``
picks one per layer, for all layers at once::

    gemma-scope-2b-pt-res#width=16k,l0=100     width 16k, the L0 closest to 100 in each layer
    gemma-scope-2-4b-it-res#width=16k,l0=medium
    gemma-scope-2b-pt-res#width=16k,l0=min     (or max)

Without one, the error lists the SAEs found and the choices that pick one.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sae_store.errors import SaeStoreError
from sae_store.jsonfile import read_json
from sae_store.store import schema as S
from sae_store.train.folder import (
    CFG_FILE,
    GEMMA_SCOPE_FILES,
    METRICS_FILE,
    PROVENANCE_KEY,
    folder_format,
    has_sae,
)

if TYPE_CHECKING:
    from sae_store.store import ActivationStore

log = logging.getLogger(__name__)

#: Per-layer folder names tried, in order, under a plain ``--saes`` folder.
DEFAULT_PATTERNS = (
    "layer_{L}",
    "blocks.{L}.hook_resid_post",
    "layers.{L}",
    "model.layers.{L}",
    "language_model.layers.{L}",
    "model.language_model.layers.{L}",
    "resid_post/layer_{L}_*",
    "layer_{L}_*",
)
LAYOUTS_HELP = (
    "layer_<L>/ (sae-store, SAELens: cfg.json + sae_weights.safetensors), blocks.<L>.hook_resid_post/ "
    "(SAELens uploads), layers.<L>/ or language_model.layers.<L>/ (sparsify: cfg.json + sae.safetensors), "
    "Gemma Scope (params.npz or params.safetensors [+ config.json]) below layer_<L>/ or "
    "resid_post/layer_<L>_*; or a pattern with {L}, e.g. 'DIR/resid_post/layer_{L}_width_16k_l0_medium'; "
    "'DIR#width=16k,l0=100' picks one SAE per layer where a layer has several"
)
#: Keys of a choice (``DIR#width=16k,l0=100``) and the part of an SAE's path each one reads.
_CHOICE_KEYS = {"width": re.compile(r"width_([0-9a-z]+)"), "l0": re.compile(r"l0_([0-9a-z]+)")}


def _regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` (with ``{L}`` and shell wildcards) as a regex over '/'-separated paths."""
    parts = []
    for piece in re.split(r"(\{L\}|\*|\?)", pattern):
        if piece == "{L}":
            parts.append(r"(?P<layer>\d+)")
        elif piece == "*":
            parts.append(r"[^/]*")
        elif piece == "?":
            parts.append(r"[^/]")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts) + r"\Z")


def _sae_below(folder: Path) -> list[Path]:
    """SAE folders at or below ``folder`` (itself first if it holds one)."""
    if has_sae(folder):
        return [folder]
    found = {p.parent for name in ("cfg.json", *GEMMA_SCOPE_FILES) for p in folder.rglob(name)}
    return sorted(p for p in found if has_sae(p))


def _match(root: Path, pattern: str) -> dict[int, list[Path]]:
    """Paths under ``root`` matching ``pattern`` (relative to ``root``), by layer."""
    regex = _regex(pattern)
    out: dict[int, list[Path]] = {}
    for path in root.glob(pattern.replace("{L}", "*")):
        m = regex.match(path.relative_to(root).as_posix())
        if m and path.is_dir():
            out.setdefault(int(m.group("layer")), []).append(path)
    return out


def _split(spec: str) -> tuple[Path, str]:
    """``root`` and the pattern relative to it: the longest leading part without {L} or wildcards."""
    parts = Path(spec).parts
    fixed = next(i for i, p in enumerate(parts) if "{L}" in p or any(c in p for c in "*?"))
    return Path(*parts[:fixed]) if fixed else Path("."), "/".join(parts[fixed:])


def find_saes(
    spec: str | os.PathLike[str], layers: list[int] | None = None, *, required: bool = True
) -> dict[int, Path]:
    """The SAE folder of each layer that ``spec`` (a folder, or a pattern with ``{L}``) provides.

    Every command that takes SAEs finds them here: ``encode``, ``analyze``, ``intervene``, the report
    and the explorer.

    Parameters
    ----------
    spec
        A folder searched with :data:`DEFAULT_PATTERNS`, or a path pattern with ``{L}``.
    layers
        Layers wanted: each must have exactly one SAE. ``None``: every layer found.
    required
        False: a missing folder or one without SAEs (nothing trained yet) gives ``{}``.

    Raises
    ------
    SaeStoreError
        No such folder; no recognised layout; a wanted layer has no SAE; a layer's folder holds
        several SAEs (the message lists them and how to pick one).
    """
    text, _, choice_text = os.fspath(spec).partition("#")
    choice = _parse_choice(choice_text, os.fspath(spec))
    if not required and not Path(_split(text)[0] if "{L}" in text else text).is_dir():
        return {}
    if "{L}" in text:
        root, patterns = _split(text)
        if not root.is_dir():
            raise SaeStoreError(f"no folder {str(root)!r} for the SAE pattern {text!r}")
        tried: tuple[str, ...] = (patterns,)
    else:
        root = Path(text)
        if not root.is_dir():
            raise SaeStoreError(f"no SAE folder at {text!r}; train SAEs with `sae-store train --out {text}`")
        tried = DEFAULT_PATTERNS
    candidates: dict[int, list[Path]] = {}
    unchosen: dict[int, list[Path]] = {}  # SAEs of layers that the choice left without one
    for pattern in tried:
        for layer, dirs in _match(root, pattern).items():
            every = [sae for d in dirs for sae in _sae_below(d)]
            found = _chosen(every, choice, root)
            if found and layer not in candidates:
                candidates[layer] = found
            elif every:
                unchosen.setdefault(layer, every)
    if not candidates and not unchosen and not required:
        return {}
    if not candidates and not unchosen:
        raise SaeStoreError(
            f"{text!r} holds no SAE in a known layout (tried {', '.join(tried)}); accepted layouts: "
            f"{LAYOUTS_HELP}"
        )
    wanted = sorted(candidates) if layers is None else list(layers)
    asked = sorted(unchosen) if layers is None else wanted
    unmatched = [layer for layer in asked if layer in unchosen and layer not in candidates]
    if choice and unmatched:
        layer = unmatched[0]
        shown = ", ".join(str(p.relative_to(root)) for p in unchosen[layer][:6])
        raise SaeStoreError(
            f"no SAE of layer {layer} matches the choice '#{choice_text}' in {text!r}; it has {shown}"
        )
    missing = [layer for layer in wanted if layer not in candidates]
    if missing:
        raise SaeStoreError(
            f"no SAE for layer(s) {missing} in {text!r} (it has layers {sorted(candidates)}); train them "
            "with `sae-store train`, or point --saes at a folder that has them"
        )
    for layer in wanted:
        if len(candidates[layer]) > 1:
            shown = ", ".join(str(p.relative_to(root)) for p in candidates[layer][:6])
            tags = _tags(candidates[layer][0], root)
            pick = ",".join(f"{k}={v}" for k, v in tags.items()) or "..."
            raise SaeStoreError(
                f"layer {layer} has {len(candidates[layer])} SAEs under {text!r} ({shown}); pick one per "
                f"layer with a choice after '#', e.g. --saes '{text}#{pick}' (l0=N picks the L0 closest to "
                f"N, l0=min or l0=max the sparsest or densest), or pass a pattern, e.g. "
                f"--saes '{root / _example(candidates[layer][0], root, layer)}'"
            )
    return {layer: candidates[layer][0] for layer in wanted}


def _parse_choice(text: str, spec: str) -> dict[str, str]:
    """``width=16k,l0=100`` as a dict; refused, naming the keys, if it is not one."""
    choice: dict[str, str] = {}
    for item in [t.strip() for t in text.split(",") if t.strip()]:
        key, eq, value = item.partition("=")
        if not eq or key.strip() not in _CHOICE_KEYS or not value.strip():
            raise SaeStoreError(
                f"--saes {spec!r}: the choice {item!r} is not understood; after '#' give "
                f"{' and/or '.join(f'{k}=VALUE' for k in _CHOICE_KEYS)} separated by commas, e.g. "
                "'DIR#width=16k,l0=100' (l0: a number for the closest L0, min, max, or a name such as medium)"
            )
        choice[key.strip()] = value.strip().lower()
    return choice


def _tags(path: Path, root: Path) -> dict[str, str]:
    """The width and L0 an SAE's path names (``width_16k/average_l0_71`` -> width 16k, l0 71)."""
    rel = path.relative_to(root).as_posix().lower() if path.is_relative_to(root) else path.as_posix().lower()
    return {k: m[-1] for k, regex in _CHOICE_KEYS.items() if (m := regex.findall(rel))}


def _chosen(found: list[Path], choice: dict[str, str], root: Path) -> list[Path]:
    """The SAEs of one layer that ``choice`` keeps: the width named, then the L0 named, closest to a
    number, or the smallest or largest (all of them without a choice)."""
    if not choice or not found:
        return found
    tagged = [(p, _tags(p, root)) for p in found]
    if "width" in choice:
        tagged = [(p, t) for p, t in tagged if t.get("width") == choice["width"]]
    want = choice.get("l0")
    if want is None or not tagged:
        return [p for p, _ in tagged]
    numbers = [(p, int(t["l0"])) for p, t in tagged if t.get("l0", "").isdigit()]
    if want in ("min", "max") and numbers:
        best = (min if want == "min" else max)(n for _, n in numbers)
        return [p for p, n in numbers if n == best]
    if want.isdigit() and numbers:
        target = int(want)
        return [min(numbers, key=lambda pn: (abs(pn[1] - target), pn[1]))[0]]  # a tie: the sparser
    return [p for p, t in tagged if t.get("l0") == want]


def _example(path: Path, root: Path, layer: int) -> str:
    """``path`` relative to ``root`` with the layer number replaced by ``{L}``."""
    rel = path.relative_to(root).as_posix()
    return re.sub(rf"(?<![0-9]){layer}(?![0-9])", "{L}", rel, count=1)


def check_model(cfg: dict[str, object], store_model: dict[str, object], folder: Path) -> None:
    """Warn when the SAE names a model other than the store's (by the last path component)."""
    meta = cfg.get("metadata")
    named = cfg.get("model_name") or (meta.get("model_name") if isinstance(meta, dict) else None)
    ours = store_model.get("name_or_path")
    if not named or not ours:
        return
    base = str(named).rstrip("/").rsplit("/", 1)[-1].lower()
    if base != str(ours).rstrip("/").rsplit("/", 1)[-1].lower():
        log.warning("the SAE %s was trained on model %r, the store holds %r", folder, named, ours)


#: The two dead-latent metrics: key -> (the name they are shown under in the CLI, the training
#: progress, the report and the explorer; the key of the number of tokens they were measured on).
DEAD_METRICS = {
    "dead_fraction": ("dead on held-out tokens", "dead_fraction_tokens"),
    "dead_fraction_train_window": ("dead in training window", "dead_window_tokens"),
}


def dead_text(metrics: Mapping[str, Any], key: str) -> str:
    """One dead-latent metric in words with its token count, e.g. ``dead on held-out tokens 16.0% (296
    tokens)``."""
    name, tokens = DEAD_METRICS[key]
    value = metrics.get(key)
    shown = f"{value:.1%}" if value is not None else "n/a"
    return f"{name} {shown} ({metrics.get(tokens, 0):,} tokens)"


@dataclass
class SaeRecord:
    """One layer's SAE as its folder (and ``encode``) recorded it."""

    layer: int
    path: Path
    format: str | None
    """``sae_store``, ``saelens``, ``sparsify`` or ``gemma_scope``."""
    cfg: dict[str, Any]
    """``cfg.json`` (architecture, sizes, provenance and final metrics); {} for a folder without one."""
    metrics: list[dict[str, Any]] = field(default_factory=list)
    """Rows of ``metrics.jsonl`` (one per logging step; ours only)."""
    quality: dict[str, Any] = field(default_factory=dict)
    """Held-out metrics (FVU, L0, ``dead_fraction``, tokens; see :data:`DEAD_METRICS`): saved by
    ``sae-store train`` in ``cfg.json``, or, for an SAE without them (pretrained), measured by
    ``sae-store encode``."""
    measured_by: str = "train"
    """Which step measured ``quality``: ``train`` or ``encode``."""


def sae_records(
    spec: str | os.PathLike[str] | None, encoded: Mapping[str, Any] | None = None
) -> dict[int, SaeRecord]:
    """Every layer's SAE that ``spec`` provides (any layout :func:`find_saes` reads; none trained yet:
    ``{}``) with what its folder records, completed from ``encoded``: the features group's ``saes``
    attribute, the SAE ``encode`` used per layer (layers ``spec`` lacks are added, and a folder's SAE
    without held-out metrics gets those ``encode`` measured when it is the same folder)."""
    out: dict[int, SaeRecord] = {}
    for layer, folder in (find_saes(spec, required=False) if spec is not None else {}).items():
        cfg = read_json(folder / CFG_FILE) if (folder / CFG_FILE).is_file() else {}
        metrics_file = folder / METRICS_FILE
        lines = metrics_file.read_text(encoding="utf-8").splitlines() if metrics_file.is_file() else []
        val = ((cfg.get(PROVENANCE_KEY) or {}).get("metrics") or {}).get("val") or {}
        rows = [json.loads(ln) for ln in lines if ln.strip()]
        out[layer] = SaeRecord(layer, folder, folder_format(folder, cfg), cfg, rows, dict(val))
    for key, rec in (encoded or {}).items():
        layer, quality = int(key), rec.get("quality") or {}
        have = out.get(layer)
        if have is None:
            cfg = {name: rec.get(name) for name in ("architecture", "format", "d_in", "d_sae")}
            out[layer] = SaeRecord(
                layer, Path(rec["folder"]), rec.get("format"), cfg, [], dict(quality), "encode"
            )
        elif not have.quality and quality and have.path.resolve() == Path(rec["folder"]):
            out[layer] = replace(have, quality=dict(quality), measured_by="encode")
    return dict(sorted(out.items()))


def encoded_saes(store: ActivationStore) -> dict[str, Any]:
    """The features group's ``saes`` attribute: per layer, the SAE ``encode`` used (and its quality)."""
    from sae_store.store.results import group_attrs, has_group

    if not has_group(store, S.FEATURES):
        return {}
    return dict(group_attrs(store, S.FEATURES).get("saes") or {})
