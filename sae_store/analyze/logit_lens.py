"""``analyze logit_lens``: the output tokens each feature's decoder direction promotes and suppresses.

As SAEDashboard computes it: a feature's decoder row goes through the model's final norm and the
unembedding, ``logits = lm_head(final_norm(W_dec[f]))``, and the tokens with the largest and the
smallest logits are kept. The study's gender words (both languages' lists, as ``prepare`` counts
them) are ranked among the whole vocabulary for every feature.

The vocabulary is walked in blocks (Gemma 3 has 262,144 tokens): per block the logits of a group of
features are computed once, merged into the running top and bottom ``k``, and counted against the
gender words' own logits, so the full (features x vocabulary) matrix never exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr

from sae_store.analyze.config import LogitLensConfig
from sae_store.analyze.results import AnalysisRun
from sae_store.data.gender import StudyTerm
from sae_store.progress import progress_bar
from sae_store.store import schema as S
from sae_store.store.results import strings

#: Features whose logits are computed together (bounds memory to rows x vocabulary block floats).
FEATURE_BLOCK = 1024


@dataclass(frozen=True)
class Lens:
    """The logit lens of F features."""

    promoted_id: np.ndarray
    """(F, k) token ids with the largest logits, largest first."""
    promoted_logit: np.ndarray
    suppressed_id: np.ndarray
    """(F, k) token ids with the smallest logits, smallest first."""
    suppressed_logit: np.ndarray
    term_rank: np.ndarray
    """(F, W) 1 + the number of tokens whose logit exceeds the term token's."""
    term_logit: np.ndarray


def _merge(
    values: torch.Tensor,
    ids: torch.Tensor,
    new_values: torch.Tensor,
    new_ids: torch.Tensor,
    k: int,
    largest: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best ``k`` of the running candidates and a new block's (ties: the lower token id first)."""
    all_values = torch.cat([values, new_values], dim=1)
    all_ids = torch.cat([ids, new_ids], dim=1)
    order = torch.topk(all_values, min(k, all_values.shape[1]), dim=1, largest=largest, sorted=True).indices
    return torch.gather(all_values, 1, order), torch.gather(all_ids, 1, order)


def _count_greater(logits: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """(F, W) how many entries of each row of ``logits`` (F, V) exceed each of its row's ``thresholds``."""
    sorted_t, order = torch.sort(thresholds, dim=1)
    below = torch.searchsorted(sorted_t, logits.contiguous(), right=False)  # terms strictly below each logit
    hist = torch.zeros(logits.shape[0], thresholds.shape[1] + 1, dtype=torch.int64, device=logits.device)
    hist.scatter_add_(1, below, torch.ones_like(below))
    # a logit exceeds sorted term j iff more than j terms lie below it
    greater_sorted = hist.flip(1).cumsum(1).flip(1)[:, 1:]
    return torch.empty_like(greater_sorted).scatter_(1, order, greater_sorted)


def logit_lens(
    w_dec_FD: torch.Tensor,
    final_norm: Callable[[torch.Tensor], torch.Tensor],
    w_U_VD: torch.Tensor,
    term_ids: np.ndarray,
    *,
    k: int,
    block: int,
    on_block: Callable[[int], Any] | None = None,
) -> Lens:
    """The logit lens of every row of ``w_dec_FD`` through ``final_norm`` and the unembedding ``w_U_VD``.

    ``term_ids`` are the token ids ranked for every feature; ``block`` vocabulary rows are multiplied
    at a time; ``on_block(n_features)`` is called after each group of features (progress).
    """
    F, V = w_dec_FD.shape[0], w_U_VD.shape[0]
    k = min(k, V)
    terms = torch.as_tensor(np.asarray(term_ids, dtype=np.int64), device=w_U_VD.device)
    out: dict[str, list[np.ndarray]] = {name: [] for name in Lens.__dataclass_fields__}
    with torch.no_grad():
        for f0 in range(0, F, FEATURE_BLOCK):
            x = final_norm(w_dec_FD[f0 : f0 + FEATURE_BLOCK].to(w_U_VD.device)).to(w_U_VD.dtype)
            n = x.shape[0]
            term_logit = x @ w_U_VD[terms].T
            greater = torch.zeros(n, len(terms), dtype=torch.int64, device=x.device)
            empty_v = torch.empty(n, 0, dtype=x.dtype, device=x.device)
            empty_i = torch.empty(n, 0, dtype=torch.int64, device=x.device)
            top, top_i, bot, bot_i = empty_v, empty_i, empty_v, empty_i
            for v0 in range(0, V, block):
                logits = x @ w_U_VD[v0 : v0 + block].T
                kb = min(k, logits.shape[1])
                t = torch.topk(logits, kb, dim=1, largest=True)
                top, top_i = _merge(top, top_i, t.values, t.indices + v0, k, True)
                b = torch.topk(logits, kb, dim=1, largest=False)
                bot, bot_i = _merge(bot, bot_i, b.values, b.indices + v0, k, False)
                if len(terms):
                    greater += _count_greater(logits, term_logit)
                    # a term's own token never outranks itself (its two products may differ in the last bit)
                    inside = (terms >= v0) & (terms < v0 + logits.shape[1])
                    own = logits[:, terms[inside] - v0]
                    greater[:, inside] -= (own > term_logit[:, inside]).to(torch.int64)
            for name, value in (
                ("promoted_id", top_i.to(torch.int32)),
                ("promoted_logit", top),
                ("suppressed_id", bot_i.to(torch.int32)),
                ("suppressed_logit", bot),
                ("term_rank", (greater + 1).to(torch.int32)),
                ("term_logit", term_logit),
            ):
                out[name].append(
                    value.float().cpu().numpy() if value.is_floating_point() else value.cpu().numpy()
                )
            if on_block is not None:
                on_block(n)
    return Lens(**{name: np.concatenate(parts) for name, parts in out.items()})


@dataclass(frozen=True)
class TermTokens:
    """The token each study term is ranked by."""

    terms: list[StudyTerm]
    token_id: np.ndarray
    """(W,) the word's single token (with a leading space if the tokenizer has one), else its first piece."""
    pieces: np.ndarray
    """(W,) tokens the word splits into."""


def term_tokens(tokenizer: Any, terms: list[StudyTerm]) -> TermTokens:
    """The token of each term under ``tokenizer`` (words are preceded by a space in running text)."""
    ids, pieces = [], []
    for term in terms:
        spaced = tokenizer.encode(" " + term.text, add_special_tokens=False)
        bare = tokenizer.encode(term.text, add_special_tokens=False)
        best = min((spaced, bare), key=len)
        ids.append(int(best[0]))
        pieces.append(len(best))
    return TermTokens(list(terms), np.array(ids, dtype=np.int32), np.array(pieces, dtype=np.int32))


def run_logit_lens(saes: dict[int, Any], model_dir: str, config: LogitLensConfig) -> AnalysisRun:
    """The logit lens of every feature of every layer in ``saes``, through the model of ``model_dir``."""
    from sae_store.data.gender import study_terms
    from sae_store.models.loader import load_model

    loaded = load_model(model_dir, device=config.device, dtype="float32")
    model: Any = loaded.model
    w_U = model.get_output_embeddings().weight.detach()
    norm = loaded.adapter.final_norm(loaded.model)
    terms = term_tokens(loaded.processor.tokenizer, study_terms())
    layers = sorted(saes)
    lenses = []
    with progress_bar(total=sum(saes[la].d_sae for la in layers), desc="logit lens", unit="feature") as bar:
        for layer in layers:
            w_dec = saes[layer].W_dec.detach().float()
            lenses.append(
                logit_lens(
                    w_dec,
                    norm,
                    w_U,
                    terms.token_id,
                    k=config.lens_k,
                    block=config.vocab_block,
                    on_block=bar.update,
                )
            )
    F = next(iter(saes.values())).d_sae if saes else 0
    dims_k, dims_w = (S.LAYER, S.FEATURE, "rank"), (S.LAYER, S.FEATURE, "term")
    data = {name: np.stack([getattr(lens, name) for lens in lenses]) for name in Lens.__dataclass_fields__}
    ds = xr.Dataset(
        {name: (dims_w if name.startswith("term_") else dims_k, value) for name, value in data.items()},
        coords={
            S.LAYER: np.array(layers, dtype=np.int32),
            S.FEATURE: np.arange(F, dtype=np.int64),
            "term_text": ("term", strings([t.text for t in terms.terms])),
            "term_language": ("term", strings([t.language for t in terms.terms])),
            "term_gender": ("term", strings([t.gender for t in terms.terms])),
            "term_token_id": ("term", terms.token_id),
            "term_pieces": ("term", terms.pieces),
        },
        attrs={
            "config": config.to_dict(),
            "model": loaded.identity,
            "vocab_size": int(w_U.shape[0]),
            "method": "logits = lm_head(final_norm(W_dec[f])); ranks count tokens with a larger logit",
        },
    )
    for name in data:
        ds[name].encoding["chunks"] = (1, min(FEATURE_BLOCK, max(F, 1)), ds.sizes[name_dim(name)])
    return AnalysisRun(ds, _payload(ds, terms))


def name_dim(name: str) -> str:
    """The last dimension of a stored logit-lens variable."""
    return "term" if name.startswith("term_") else "rank"


def _payload(ds: xr.Dataset, terms: TermTokens, top: int = 10) -> dict[str, Any]:
    """The JSON summary: per layer and gender word, the features that rank it highest."""
    layers: dict[str, Any] = {}
    for layer in ds[S.LAYER].values:
        ranks = np.asarray(ds["term_rank"].sel({S.LAYER: layer}).values)
        layers[str(int(layer))] = {
            term.text: [int(f) for f in np.argsort(ranks[:, w], kind="stable")[:top]]
            for w, term in enumerate(terms.terms)
        }
    return {
        "config": ds.attrs["config"],
        "vocab_size": ds.attrs["vocab_size"],
        "terms": [{"text": t.text, "language": t.language, "gender": t.gender} for t in terms.terms],
        "features_promoting_term_most": layers,
    }
