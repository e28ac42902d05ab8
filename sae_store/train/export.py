"""Writing SAEs in another tool's layout (``sae-store export-saes``): sparsify's or Gemma Scope's.

A copy in a pretrained layout computes exactly what the original computes, so any tool reading that
layout (and ``encode``, ``evaluate``, ``intervene`` through their pretrained-SAE loaders) gives the
original's numbers:

- ``sparsify`` (``layers.<L>/cfg.json`` + ``sae.safetensors``: ``encoder.weight`` [d_sae, d_in],
  ``encoder.bias``, ``W_dec``, ``b_dec``): TopK SAEs, which sparsify's encoder computes the same way
  (the decoder bias subtracted from the input, top k of the ReLU'd pre-activations);
- ``gemma-scope`` (``resid_post/layer_<L>_width_<d_sae>/params.safetensors`` with ``w_enc``, ``w_dec``,
  ``b_enc``, ``b_dec``, ``threshold``, + ``config.json``): SAEs with a ReLU or a threshold (relu,
  jumprelu, and batchtopk / matryoshka saved as jumprelu); Gemma Scope does not subtract the decoder
  bias from the input, so it is folded into ``b_enc`` (``b_enc - b_dec @ W_enc``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file

from sae_store.errors import SaeStoreError
from sae_store.progress import progress_bar
from sae_store.train.folder import CFG_FILE, GEMMA_SCOPE_FILES, LAYOUTS, SPARSIFY_WEIGHTS_FILE, Layout
from sae_store.train.formats import LoadedSae, load_sae


def _write(folder: Path, tensors: dict[str, torch.Tensor], weights: str, config: str, cfg: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, write in (
        (weights, lambda p: save_file({k: v.contiguous() for k, v in tensors.items()}, str(p))),
        (config, lambda p: p.write_text(json.dumps(cfg, indent=2))),
    ):
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        write(tmp)
        os.replace(tmp, folder / name)
    return folder


def export_sae(loaded: LoadedSae, out_dir: str | os.PathLike[str], layer: int, layout: Layout) -> Path:
    """Write ``loaded`` (the SAE of ``layer``) under ``out_dir`` in ``layout``; returns its folder.

    Raises
    ------
    SaeStoreError
        The layout cannot express the SAE's architecture (a TopK SAE as Gemma Scope, a threshold SAE
        as sparsify).
    """
    sae = loaded.sae
    W_enc, W_dec = sae.W_enc.detach().float().cpu(), sae.W_dec.detach().float().cpu()
    b_enc, b_dec = sae.b_enc.detach().float().cpu(), sae.b_dec.detach().float().cpu()
    arch = sae.architecture
    if layout == "sparsify":
        if arch != "topk" or not sae.apply_b_dec_to_input:
            raise SaeStoreError(
                f"layer {layer}'s SAE is {arch!r}; the sparsify layout holds TopK SAEs only (use --layout "
                "gemma-scope for SAEs with a ReLU or a threshold)"
            )
        cfg = {
            "activation": "topk",
            "k": sae.config.k,
            "num_latents": sae.d_sae,
            "d_in": sae.d_in,
            "multi_topk": False,
            "skip_connection": False,
            "transcode": False,
            "normalize_decoder": True,
        }
        tensors = {"encoder.weight": W_enc.T, "encoder.bias": b_enc, "W_dec": W_dec, "b_dec": b_dec}
        return _write(Path(out_dir) / f"layers.{layer}", tensors, SPARSIFY_WEIGHTS_FILE, CFG_FILE, cfg)
    if arch == "topk":
        raise SaeStoreError(
            f"layer {layer}'s SAE is TopK, which Gemma Scope's JumpReLU layout cannot express; use --layout "
            "sparsify"
        )
    held = {**dict(sae.named_parameters()), **dict(sae.named_buffers())}
    threshold = held.get("threshold", held.get("topk_threshold"))
    threshold = (
        torch.zeros(sae.d_sae) if threshold is None else threshold.detach().float().cpu().expand(sae.d_sae)
    )
    if sae.apply_b_dec_to_input:  # Gemma Scope encodes x @ W_enc + b_enc
        b_enc = b_enc - b_dec @ W_enc
    tensors = {"w_enc": W_enc, "w_dec": W_dec, "b_enc": b_enc, "b_dec": b_dec, "threshold": threshold}
    cfg = {
        "architecture": "jump_relu",
        "width": sae.d_sae,
        "d_in": sae.d_in,
        "hf_hook_point_in": f"layer_{layer}",
    }
    folder = Path(out_dir) / "resid_post" / f"layer_{layer}_width_{sae.d_sae}"
    return _write(folder, tensors, GEMMA_SCOPE_FILES[0], "config.json", cfg)


def export_saes(
    sae_dirs: Mapping[int, str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    layout: Layout,
    *,
    progress: bool = True,
) -> dict[int, Path]:
    """Write every layer's SAE of ``sae_dirs`` (layer -> folder) under ``out_dir`` in ``layout``."""
    if layout not in LAYOUTS:
        raise SaeStoreError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")
    return {
        layer: export_sae(load_sae(sae_dirs[layer]), out_dir, layer, layout)
        for layer in progress_bar(sorted(sae_dirs), desc="export", unit="SAE", enabled=progress)
    }
