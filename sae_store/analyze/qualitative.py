"""``analyze qualitative``: per sample, the biased features most active on it, as a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sae_store.analyze.data import GENDERS
from sae_store.store.results import Labels

#: Columns of the table, in order.
COLUMNS = (
    "sample",
    "image",
    "gender",
    "layer",
    "language",
    "feature",
    "activation",
    "direction",
    "d",
    "q",
    "interpretation",
    "caption",
)


def pick_samples(labels: Labels, n_per_gender: int, seed: int) -> np.ndarray:
    """Positions of up to ``n_per_gender`` random male and female samples (seeded), in store order."""
    rng = np.random.default_rng(seed)
    picked = []
    for g in GENDERS:
        pool = np.flatnonzero(labels.gender == g)
        picked.append(rng.choice(pool, size=min(n_per_gender, pool.size), replace=False))
    return np.sort(np.concatenate(picked)).astype(np.int64)


def top_biased_rows(
    values_F: np.ndarray, d: np.ndarray, q: np.ndarray, *, alpha: float, n: int
) -> list[tuple[int, float]]:
    """The ``n`` significant (q < alpha) features with the highest positive value in one sample."""
    sig = np.flatnonzero((q < alpha) & (values_F > 0))
    order = sig[np.argsort(-values_F[sig], kind="stable")][:n]
    return [(int(f), float(values_F[f])) for f in order]


def table_rows(
    sample: str,
    row: int,
    labels: Labels,
    layer: int,
    language: str,
    hits: list[tuple[int, float]],
    d: np.ndarray,
    q: np.ndarray,
    descriptions: dict[tuple[int, str, int], str],
) -> list[dict[str, Any]]:
    """Table rows of one sample at one (layer, language)."""
    return [
        {
            "sample": sample,
            "image": labels.image[row],
            "gender": labels.gender[row],
            "layer": layer,
            "language": language,
            "feature": f,
            "activation": value,
            "direction": "male" if d[f] > 0 else "female",
            "d": float(d[f]),
            "q": float(q[f]),
            "interpretation": descriptions.get((layer, language, f), ""),
            "caption": labels.captions[language][row].split("\n")[0] if language in labels.captions else "",
        }
        for f, value in hits
    ]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def write_markdown(rows: list[dict[str, Any]], path: Path) -> Path:
    """The table as Markdown, one section per sample."""
    lines = ["# Qualitative examples: the biased features most active on each sample", ""]
    by_sample: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_sample.setdefault(r["sample"], []).append(r)
    cols = [c for c in COLUMNS if c not in ("sample", "image", "gender", "caption")]
    for sample, group in by_sample.items():
        first = group[0]
        lines += [
            f"## {sample} ({first['gender']}, {first['image']})",
            "",
            f"Caption: {first['caption']}",
            "",
        ]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_cell(r[c]) for c in cols) + " |" for r in group]
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
