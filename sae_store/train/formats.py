"""SAE folders on disk: ours (SAELens layout plus provenance), SAELens, sparsify and Gemma Scope.

Our folder is a SAELens folder: ``cfg.json`` + ``sae_weights.safetensors`` with ``W_enc``
[d_in, d_sae], ``W_dec`` [d_sae, d_in], ``b_enc`` [d_sae], ``b_dec`` [d_in] (+ ``threshold`` [d_sae]
for JumpReLU), the input normalisation folded into the weights (``normalize_activations: "none"``),
an optional ``sparsity.safetensors`` (log10 feature density) and our provenance under the
``sae_store`` key of ``cfg.json`` (SAELens ignores unknown keys). BatchTopK and Matryoshka
BatchTopK SAEs are saved as JumpReLU SAEs, as SAELens does; norm-constrained decoders are saved
with unit-norm rows (:meth:`~sae_store.train.sae.SparseAutoencoder.fold_decoder_norm`).
Only safetensors, JSON and pickle-free ``.npz`` are read.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from sae_store.errors import ConfigError, ModelLoadError
from sae_store.jsonfile import read_json
from sae_store.train.architectures import ARCHITECTURES, saelens_architecture
from sae_store.train.config import SaeConfig
from sae_store.train.folder import (
    CFG_FILE,
    GEMMA_SCOPE_FILES,
    PROVENANCE_KEY,
    SPARSIFY_WEIGHTS_FILE,
    SPARSITY_FILE,
    WEIGHTS_FILE,
    folder_format,
)
from sae_store.train.sae import SparseAutoencoder, build_sae


class LoadedSae(NamedTuple):
    """An SAE read from disk, ready for inference on raw activations."""

    sae: SparseAutoencoder
    """The module, in eval mode, parameters frozen (requires_grad False)."""
    format: str
    """``sae_store``, ``saelens``, ``sparsify`` or ``gemma_scope``."""
    weights_path: Path
    cfg: dict[str, Any]
    """The folder's configuration as read (empty for a Gemma Scope folder without one)."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_tensors(sae: SparseAutoencoder, *, scale: float = 1.0) -> dict[str, Tensor]:
    """The SAELens tensors of ``sae`` with the input scale folded in (the model is not modified)."""
    inference = copy.deepcopy(sae).cpu().float()
    inference.fold_input_scale(scale)
    inference.fold_decoder_norm()
    tensors = {
        name: getattr(inference, name).detach().contiguous() for name in ("W_enc", "W_dec", "b_enc", "b_dec")
    }
    name = ARCHITECTURES[sae.architecture].threshold
    if name is not None:  # a learned parameter (JumpReLU) or a running estimate (BatchTopK's buffer)
        held = {**dict(inference.named_parameters()), **dict(inference.named_buffers())}
        tensors["threshold"] = held[name].detach().float().expand(sae.d_sae).contiguous()
    return tensors


def saelens_config(
    sae: SparseAutoencoder, *, metadata: dict[str, Any], provenance: dict[str, Any]
) -> dict[str, Any]:
    """cfg.json content: SAELens v6 fields, its metadata (also at top level for older readers), ours."""
    arch = ARCHITECTURES[sae.architecture].saved_as
    cfg: dict[str, Any] = {
        "architecture": arch,
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": sae.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "none",
    }
    if arch == "topk":
        cfg.update(k=sae.config.k, rescale_acts_by_decoder_norm=False)
    return {
        **cfg,
        **metadata,
        "metadata": dict(metadata),
        PROVENANCE_KEY: {"architecture": sae.architecture, **provenance},
    }


def save_sae(
    sae: SparseAutoencoder,
    folder: str | os.PathLike[str],
    *,
    scale: float = 1.0,
    metadata: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    log10_density: Tensor | None = None,
) -> Path:
    """Write ``sae`` as a SAELens-compatible folder (weights, then cfg.json, each atomically).

    ``scale`` is the input normalisation the model was trained with; it is folded into the saved
    weights, which therefore work on raw activations.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, Any]] = [(WEIGHTS_FILE, export_tensors(sae, scale=scale))]
    if log10_density is not None:
        files.append((SPARSITY_FILE, {"sparsity": log10_density.detach().float().cpu().contiguous()}))
    for name, tensors in files:
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        save_file(tensors, str(tmp))
        os.replace(tmp, folder / name)
    cfg = saelens_config(sae, metadata=metadata or {}, provenance={"norm_scale": scale, **(provenance or {})})
    tmp = folder / f".{CFG_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(cfg, indent=2))
    os.replace(tmp, folder / CFG_FILE)
    return folder


def _read_json(path: Path) -> dict[str, Any]:
    data = read_json(path, error=ModelLoadError)
    if not isinstance(data, dict):
        raise ModelLoadError(f"{str(path)!r} does not hold a JSON object")
    return data


def _read_tensors(path: Path) -> dict[str, Tensor]:
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {k: torch.from_numpy(np.array(data[k])) for k in data.files}
        return load_file(str(path))
    except Exception as e:  # safetensors and numpy raise several types for damaged files
        raise ModelLoadError(f"cannot read SAE weights {str(path)!r}: {e}") from e


def _build(
    architecture: str,
    tensors: dict[str, Tensor],
    *,
    k: int = 0,
    apply_b_dec_to_input: bool,
    source: Path,
) -> SparseAutoencoder:
    needed = ["W_enc", "W_dec", "b_enc", "b_dec"] + (["threshold"] if architecture == "jumprelu" else [])
    missing = [n for n in needed if n not in tensors]
    if missing:
        raise ModelLoadError(f"SAE weights {str(source)!r} lack {missing}; found {sorted(tensors)}")
    W_enc = tensors["W_enc"]
    if W_enc.ndim != 2:
        raise ModelLoadError(
            f"W_enc of {str(source)!r} must be 2-D [d_in, d_sae], got shape {tuple(W_enc.shape)}"
        )
    d_in, d_sae = W_enc.shape
    shapes = {"W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,), "threshold": (d_sae,)}
    for name in needed[1:]:
        if tuple(tensors[name].shape) != shapes[name]:
            raise ModelLoadError(
                f"{name} of {str(source)!r} has shape {tuple(tensors[name].shape)}, expected {shapes[name]} "
                f"for W_enc [d_in={d_in}, d_sae={d_sae}]"
            )
    bad = [n for n in needed if not bool(torch.isfinite(tensors[n]).all())]
    if bad:
        raise ModelLoadError(
            f"SAE weights {str(source)!r} hold NaN or infinite values in {bad}; the file is damaged or the "
            "training diverged - use another SAE"
        )
    try:
        config = SaeConfig(
            architecture=architecture,
            d_in=d_in,
            d_sae=d_sae,
            k=k or 1,
            decoder_init_norm=1.0,
        )
    except ConfigError as e:
        raise ModelLoadError(f"SAE {str(source)!r} has an unusable configuration: {e}") from e
    sae = build_sae(config, apply_b_dec_to_input=apply_b_dec_to_input)
    sae.load_state_dict({n: tensors[n].float() for n in needed}, strict=True)
    return sae.eval().requires_grad_(False)


def _load_saelens(folder: Path, cfg: dict[str, Any]) -> tuple[SparseAutoencoder, Path]:
    arch = cfg.get("architecture", "standard")
    ours = saelens_architecture(arch)
    if ours is None:
        supported = sorted({name for a in ARCHITECTURES for name in a.loads})
        raise ModelLoadError(f"SAE {str(folder)!r} has architecture {arch!r}; supported: {supported}")
    norm = cfg.get("normalize_activations", "none")
    if norm not in ("none", None, False):
        raise ModelLoadError(
            f"SAE {str(folder)!r} expects normalize_activations={norm!r}; fold the normalisation into its "
            "weights in SAELens first (fold_activation_norm_scaling_factor) and save it again"
        )
    if cfg.get("rescale_acts_by_decoder_norm") or cfg.get("reshape_activations", "none") != "none":
        raise ModelLoadError(
            f"SAE {str(folder)!r} uses rescale_acts_by_decoder_norm or reshape_activations, which are not "
            "supported; fold the decoder norms in SAELens (fold_W_dec_norm) and save it again"
        )
    path = folder / WEIGHTS_FILE
    k = int(cfg.get("k") or cfg.get("activation_fn_kwargs", {}).get("k") or 0)
    sae = _build(
        ours.name,
        _read_tensors(path),
        k=k,
        apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
        source=path,
    )
    return sae, path


def _load_sparsify(folder: Path, cfg: dict[str, Any]) -> tuple[SparseAutoencoder, Path]:
    path = folder / SPARSIFY_WEIGHTS_FILE
    if cfg.get("activation", "topk") != "topk" or cfg.get("skip_connection"):
        raise ModelLoadError(
            f"sparsify SAE {str(folder)!r} uses activation={cfg.get('activation')!r}, "
            f"skip_connection={cfg.get('skip_connection')!r}; only plain top-k SAEs are supported"
        )
    raw = _read_tensors(path)
    if "encoder.weight" not in raw or "W_dec" not in raw:
        raise ModelLoadError(
            f"{str(path)!r} is not a sparsify SAE with a decoder (needs encoder.weight, encoder.bias, W_dec, "
            f"b_dec); found {sorted(raw)}"
        )
    tensors = {
        "W_enc": raw["encoder.weight"].T,
        "b_enc": raw.get("encoder.bias"),
        "W_dec": raw["W_dec"],
        "b_dec": raw.get("b_dec"),
    }
    sae = _build(
        "topk",
        {k: v for k, v in tensors.items() if v is not None},
        k=int(cfg.get("k", 32)),
        apply_b_dec_to_input=not cfg.get("transcode", False),
        source=path,
    )
    return sae, path


def _load_gemma_scope(path: Path) -> tuple[SparseAutoencoder, Path]:
    raw = _read_tensors(path)
    if "affine_skip_connection" in raw:
        raise ModelLoadError(f"{str(path)!r} is a transcoder with a skip connection; only SAEs are supported")
    names = {"w_enc": "W_enc", "w_dec": "W_dec", "b_enc": "b_enc", "b_dec": "b_dec", "threshold": "threshold"}
    tensors = {names[k.lower()]: v for k, v in raw.items() if k.lower() in names}
    # Gemma Scope encodes x @ W_enc + b_enc: the decoder bias is not subtracted from the input
    return _build("jumprelu", tensors, apply_b_dec_to_input=False, source=path), path


def load_sae(path: str | os.PathLike[str], *, device: str = "cpu") -> LoadedSae:
    """Read an SAE folder: ours, SAELens (``cfg.json`` + ``sae_weights.safetensors``), sparsify
    (``cfg.json`` + ``sae.safetensors``) or Gemma Scope (``params.safetensors`` / ``params.npz``, or
    the path of such a file).

    Raises
    ------
    ModelLoadError
        Nothing loadable at ``path``, damaged files, wrong shapes or an unsupported variant.
    """
    path = Path(path)
    if path.is_file() and path.name in GEMMA_SCOPE_FILES:
        sae, weights = _load_gemma_scope(path)
        return LoadedSae(sae.to(device), "gemma_scope", weights, {})
    if not path.is_dir():
        raise ModelLoadError(f"no SAE folder at {str(path)!r}")
    cfg = _read_json(path / CFG_FILE) if (path / CFG_FILE).is_file() else {}
    fmt = folder_format(path, cfg)
    if fmt in ("sae_store", "saelens"):
        sae, weights = _load_saelens(path, cfg)
    elif fmt == "sparsify":
        sae, weights = _load_sparsify(path, cfg)
    elif fmt == "gemma_scope":
        sae, weights = _load_gemma_scope(next(path / f for f in GEMMA_SCOPE_FILES if (path / f).is_file()))
    else:
        raise ModelLoadError(
            f"{str(path)!r} holds no SAE: expected cfg.json with {WEIGHTS_FILE} (sae-store, SAELens) or "
            f"{SPARSIFY_WEIGHTS_FILE} (sparsify), or {' / '.join(GEMMA_SCOPE_FILES)} (Gemma Scope)"
        )
    return LoadedSae(sae.to(device), fmt, weights, cfg)


def weights_shape(folder: str | os.PathLike[str]) -> tuple[int, int]:
    """``(d_in, d_sae)`` of the SAE in ``folder`` (any layout :func:`load_sae` reads), from the weights
    file's header where it is safetensors (the weights are not read).

    Raises
    ------
    ModelLoadError
        As :func:`load_sae`, for a folder without an SAE or with damaged weights.
    """
    from safetensors import safe_open

    path = Path(folder)
    cfg = _read_json(path / CFG_FILE) if (path / CFG_FILE).is_file() else {}
    fmt = folder_format(path, cfg)
    weights, name = {
        "sae_store": (path / WEIGHTS_FILE, "W_enc"),
        "saelens": (path / WEIGHTS_FILE, "W_enc"),
        "sparsify": (path / SPARSIFY_WEIGHTS_FILE, "encoder.weight"),
        "gemma_scope": (path / GEMMA_SCOPE_FILES[0], "w_enc"),
    }.get(fmt or "", (path, ""))
    shape: list[int] = []
    if weights.is_file():
        try:
            with safe_open(str(weights), framework="pt") as f:
                key = next((k for k in f.keys() if k.lower() == name.lower()), None)  # noqa: SIM118
                shape = list(f.get_slice(key).get_shape()) if key is not None else []
        except Exception:  # a damaged header: load_sae below names the problem
            shape = []
    if len(shape) != 2:  # no SAE, Gemma Scope's params.npz or a damaged file: load it (or its error)
        sae = load_sae(path).sae
        return sae.d_in, sae.d_sae
    d_sae, d_in = shape if fmt == "sparsify" else shape[::-1]
    return int(d_in), int(d_sae)
