"""Examples of a feature drawn as delphi draws them, per language, from the store.

Samples are ranked by the feature's per-sample maximum (the ``features`` group); the explainer is
shown the top ones, one from each activation quantile of the rest and a few random firing ones;
held-out firing samples (never shown to the explainer, in any language) and as many non-firing ones
are scored. Only the chosen samples' tokens are encoded with the layer's SAE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sae_store.analyze.interpret import token_label
from sae_store.analyze.topsamples import Encoder, sample_tokens
from sae_store.autointerp.prompts import MARK_CLOSE, MARK_OPEN
from sae_store.data.images import load_image
from sae_store.models.tokens import TokenDecoder
from sae_store.roles import TokenRole
from sae_store.store import ActivationStore
from sae_store.store.results import Labels

#: Tokens marked per example (the most active ones).
MARKS = 5


@dataclass(frozen=True)
class Example:
    """One sample of one language, token by token, with the feature's activation at each token."""

    sample: str
    kind: str
    """``top``, ``quantile_<i>``, ``random``, ``held`` (held-out firing) or ``none`` (not firing)."""
    tokens: list[str]
    activations: np.ndarray
    roles: np.ndarray
    caption: str
    image: str
    """Absolute image path ("" if unknown)."""
    grid: int

    @property
    def firing(self) -> bool:
        return bool(self.activations.max(initial=0.0) > 0)

    def top_positions(self) -> list[int]:
        order = np.argsort(-self.activations, kind="stable")[:MARKS]
        return [int(t) for t in order if self.activations[t] > 0]

    def render(self, marks: list[int] | tuple[int, ...] = ()) -> str:
        """The example as text: tokens, the image as its caption, marked positions between << >>."""
        marked, parts, image_done = set(marks), [], False
        for t, (token, role) in enumerate(zip(self.tokens, self.roles, strict=True)):
            if role == TokenRole.PAD:
                continue
            if role == TokenRole.IMAGE:
                if not image_done:
                    parts.append(f" [image: {self.caption}]")
                    image_done = True
                if t in marked:
                    parts.append(f" {MARK_OPEN}{token.strip('<>')}{MARK_CLOSE}")
                continue
            if role == TokenRole.SPECIAL:  # "<start_of_image>" in a prompt would be read as an image slot
                token = token.replace("<", "[").replace(">", "]")
            token = token.replace("\n", "\\n")  # one example per line; line breaks stay visible
            parts.append(f"{MARK_OPEN}{token}{MARK_CLOSE}" if t in marked else token)
        return "".join(parts).strip()

    def image_share(self) -> float:
        total = float(self.activations.sum())
        return float(self.activations[self.roles == TokenRole.IMAGE].sum()) / total if total > 0 else 0.0

    def marked_image(self, size: int = 448) -> Image.Image | None:
        """The image with the cells of the most active image tokens outlined, or None without an image."""
        if not self.image or not self.grid:
            return None
        pixels = load_image(Path(self.image), size)
        if pixels is None:
            return None
        image = Image.fromarray(pixels)
        draw, cell = ImageDraw.Draw(image), size / self.grid
        first = int(np.flatnonzero(self.roles == TokenRole.IMAGE)[0])
        for t in self.top_positions():
            if self.roles[t] == TokenRole.IMAGE:
                r, c = divmod(t - first, self.grid)
                draw.rectangle(
                    [c * cell, r * cell, (c + 1) * cell - 1, (r + 1) * cell - 1], outline="red", width=3
                )
        return image


@dataclass(frozen=True)
class Draw:
    """Which samples a feature's prompts use: shown to the explainer, and held out (per language)."""

    shown: list[tuple[int, str]]
    """(row, kind) of the examples shown."""
    held: list[int]
    """Rows of the held-out firing samples."""
    none: list[int]
    """Rows of non-firing samples."""


def draw_samples(
    values: np.ndarray,
    valid: np.ndarray,
    *,
    n_top: int,
    n_quantiles: int,
    n_random: int,
    n_held: int,
    rng: np.random.Generator,
) -> Draw:
    """delphi's draw on one language's per-sample maxima: top, one per quantile, random; then held-out."""
    rows = np.flatnonzero(valid)
    firing = rows[np.argsort(-values[rows], kind="stable")]
    firing = firing[values[firing] > 0]
    silent = rows[values[rows] <= 0]
    top = [(int(r), "top") for r in firing[:n_top]]
    rest = firing[n_top:]
    held = rng.permutation(rest)[: min(n_held, len(rest) // 2)] if len(rest) > 1 else rest[:0]
    pool = np.setdiff1d(rest, held)
    pool = pool[np.argsort(-values[pool], kind="stable")]
    quantile = [
        (int(rng.choice(part)), f"quantile_{i}")
        for i, part in enumerate(np.array_split(pool, n_quantiles) if n_quantiles else [])
        if len(part)
    ]
    used = {r for r, _ in quantile}
    others = np.array([r for r in pool if r not in used], dtype=np.int64)
    random = [(int(r), "random") for r in rng.permutation(others)[:n_random]]
    none = rng.permutation(silent)[: max(len(held), 1)]
    return Draw(top + quantile + random, [int(r) for r in held], [int(r) for r in none])


def load_examples(
    store: ActivationStore,
    layer: int,
    language: str,
    feature: int,
    rows: list[tuple[int, str]],
    *,
    ids: np.ndarray,
    labels: Labels,
    encode: Encoder,
    decode: TokenDecoder | None,
) -> list[Example]:
    """The examples of ``rows`` ((row, kind) along the features group's sample axis), encoded."""
    if not rows:
        return []
    samples = [str(ids[r]) for r, _ in rows]
    acts, roles, input_ids = sample_tokens(store, layer, language, samples, encode, np.array([feature]))
    grid = math.isqrt(int(store.attrs.get("image_tokens", 0)))
    where = {s: i for i, s in enumerate(labels.sample)}
    out = []
    for i, ((_, kind), sample) in enumerate(zip(rows, samples, strict=True)):
        image_pos = np.flatnonzero(roles[i] == TokenRole.IMAGE)
        first = int(image_pos[0]) if image_pos.size else 0
        tokens = [
            token_label(int(t), int(r), p, first, grid or 1, decode)
            for p, (t, r) in enumerate(zip(input_ids[i], roles[i], strict=True))
        ]
        row = where[sample]
        image = f"{labels.images_dir}/{labels.image[row]}" if labels.images_dir else ""
        caption = labels.captions.get(language, labels.captions[next(iter(labels.captions))])[row]
        out.append(
            Example(sample, kind, tokens, acts[i, :, 0], roles[i], caption.split("\n")[0], image, grid)
        )
    return out
