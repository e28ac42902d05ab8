"""``analyze interpret``: what a feature responds to: top samples, firing tokens, distributions.

For each selected feature of a (layer, language): its top samples (image, gender, captions,
per-sample value), the tokens where it fires most in each (with the image-grid cell for image
tokens), histograms of its per-sample values per gender and language, and a one-line description
assembled from those facts (no language model involved).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from sae_store.analyze.data import GENDERS, aligned_gender, feature_matrix
from sae_store.analyze.topsamples import TopSamples
from sae_store.models.tokens import TokenDecoder
from sae_store.roles import TokenRole
from sae_store.store import schema as S
from sae_store.store.results import Labels, strings

#: Firing tokens listed per top sample.
TOKENS_PER_SAMPLE = 5


def token_label(
    token_id: int, role: int, position: int, first_image: int, side: int, decode: TokenDecoder | None
) -> str:
    """A readable name of one token: its text, or ``<image r,c>`` for an image token."""
    if role == TokenRole.IMAGE:
        r, c = divmod(position - first_image, side)
        return f"<image {r},{c}>"
    return decode(token_id) if decode is not None else f"<id {token_id}>"


def firing_tokens(
    acts_T: np.ndarray, roles_T: np.ndarray, ids_T: np.ndarray, side: int, decode: TokenDecoder | None
) -> list[dict[str, Any]]:
    """The positions where a feature is most active in one sample (at most :data:`TOKENS_PER_SAMPLE`)."""
    image_pos = np.flatnonzero(roles_T == TokenRole.IMAGE)
    first_image = int(image_pos[0]) if image_pos.size else 0
    order = [int(t) for t in np.argsort(-acts_T, kind="stable")[:TOKENS_PER_SAMPLE] if acts_T[t] > 0]
    return [
        {
            "position": t,
            "role": TokenRole(int(roles_T[t])).name.lower(),
            "token_id": int(ids_T[t]),
            "token": token_label(int(ids_T[t]), int(roles_T[t]), t, first_image, side, decode),
            "activation": float(acts_T[t]),
        }
        for t in order
    ]


def role_shares(acts_KT: np.ndarray, roles_KT: np.ndarray) -> dict[str, float]:
    """Fraction of the total activation (over the given samples) on image, text and special tokens."""
    total = float(acts_KT.sum())
    names = {"image": TokenRole.IMAGE, "text": TokenRole.TEXT, "special": TokenRole.SPECIAL}
    if total <= 0:
        return {n: 0.0 for n in names}
    return {n: float(acts_KT[roles_KT == code].sum()) / total for n, code in names.items()}


def histograms(
    values_by_group: dict[tuple[str, str], np.ndarray], bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Counts (group, bin) of several groups' values over common edges (0 to the overall maximum)."""
    top = max((float(v.max()) for v in values_by_group.values() if v.size), default=0.0)
    edges = np.linspace(0.0, top if top > 0 else 1.0, bins + 1)
    counts = np.stack([np.histogram(v, bins=edges)[0] for v in values_by_group.values()])
    return counts, edges


def describe(
    direction: str, d: float, q: float, genders: list[str], shares: dict[str, float], text_tokens: list[str]
) -> str:
    """One line summarising a feature from its statistics and top samples."""
    head = (
        f"{direction}-biased (d = {d:+.2f}, q = {q:.2g})"
        if direction in GENDERS
        else f"d = {d:+.2f}, q = {q:.2g}"
    )
    mix = ", ".join(f"{n} {g}" for g, n in Counter(genders).most_common())
    where = ", ".join(f"{shares[r]:.0%} {r}" for r in ("image", "text") if shares[r] > 0) or "no activation"
    words = f"; strongest text tokens: {', '.join(repr(t) for t in text_tokens)}" if text_tokens else ""
    return f"{head}. Top {len(genders)} samples: {mix}. Activation on {where} tokens{words}."


@dataclass(frozen=True)
class Interpretation:
    """Interpretation of the selected features of one (layer, language)."""

    records: list[dict[str, Any]]
    hist: np.ndarray
    """(K, language, gender, bin) counts of the per-sample statistic."""
    edges: np.ndarray
    """(K, bin + 1) histogram edges."""


def interpret_features(
    top: TopSamples,
    features: xr.Dataset,
    labels: Labels,
    bias: xr.Dataset | None,
    *,
    statistic: str,
    bins: int,
    image_tokens: int,
    decode: TokenDecoder | None,
) -> Interpretation:
    """Records, histograms and descriptions of the features in ``top``."""
    ids = strings(features[S.SAMPLE].values)
    gender = aligned_gender(features, labels)
    index = {s: i for i, s in enumerate(labels.sample)}
    languages = [str(v) for v in features[S.LANGUAGE].values]
    side = math.isqrt(image_tokens)
    dists = {
        lang: np.asarray(
            feature_matrix(features, statistic, top.layer, lang).isel(feature=top.features).values
        )
        for lang in languages
    }
    flags = {
        lang: np.asarray(features[S.COMPLETE].sel({S.LAYER: top.layer, S.LANGUAGE: lang}).values, bool)
        for lang in languages
    }
    records, hists, edges = [], [], []
    for i, f in enumerate(top.features):
        groups = {
            (lang, g): dists[lang][flags[lang] & (gender == g), i] for lang in languages for g in GENDERS
        }
        counts, e = histograms(groups, bins)
        hists.append(counts.reshape(len(languages), len(GENDERS), bins))
        edges.append(e)
        d, q = _stats(bias, top.layer, top.language, int(f))
        samples = []
        text_tokens: Counter[str] = Counter()
        for j, s in enumerate(top.samples[i]):
            row = index[ids[s]]
            hits = firing_tokens(top.token_acts[i, j], top.roles[i, j], top.input_ids[i, j], side, decode)
            text_tokens.update(h["token"] for h in hits if h["role"] == "text")
            samples.append(
                {
                    "rank": j + 1,
                    "sample": ids[s],
                    "image": labels.image[row],
                    "gender": gender[s],
                    "value": float(top.values[i, j]),
                    "captions": {lang: labels.captions[lang][row] for lang in labels.captions},
                    "tokens": hits,
                }
            )
        shares = role_shares(top.token_acts[i], top.roles[i])
        records.append(
            {
                "layer": top.layer,
                "language": top.language,
                "feature": int(f),
                "direction": top.direction[i],
                "d": d,
                "q": q,
                "activation_share": shares,
                "description": describe(
                    top.direction[i],
                    d,
                    q,
                    [x["gender"] for x in samples],
                    shares,
                    [t for t, _ in text_tokens.most_common(3)],
                ),
                "top_samples": samples,
                "histogram": {
                    "edges": e.tolist(),
                    "languages": languages,
                    "genders": list(GENDERS),
                    "counts": hists[-1].tolist(),
                },
            }
        )
    K = len(top.features)
    return Interpretation(
        records,
        np.stack(hists) if K else np.zeros((0, len(languages), len(GENDERS), bins), dtype=np.int64),
        np.stack(edges) if K else np.zeros((0, bins + 1)),
    )


def _stats(bias: xr.Dataset | None, layer: int, language: str, feature: int) -> tuple[float, float]:
    if bias is None:
        return float("nan"), float("nan")
    b = bias.sel({S.LAYER: layer, S.LANGUAGE: language, "feature": feature})
    return float(b["d"].values), float(b["q"].values)
