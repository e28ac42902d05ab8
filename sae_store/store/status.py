"""Completion summary of a store: which (layer, language, shard block) are written (``sae-store status``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sae_store.store import schema as S
from sae_store.store.core import ActivationStore

_DONE, _PARTIAL, _TODO = "#", "+", "."


@dataclass
class Completion:
    """Per-block completion of one flag array (the activations' ``complete`` by default)."""

    layers: tuple[int, ...]
    languages: tuple[str, ...]
    blocks: list[tuple[int, int]]
    done: np.ndarray
    """(layer, language, block) fraction of samples flagged, in [0, 1]."""

    @property
    def fraction(self) -> float:
        sizes = np.array([b - a for a, b in self.blocks], dtype=float)
        return float((self.done * sizes).sum() / (sizes.sum() * self.done.shape[0] * self.done.shape[1]))

    @property
    def is_complete(self) -> bool:
        return bool((self.done == 1).all())

    def remaining(self) -> list[dict[str, Any]]:
        """Per (layer, language), the sample ranges of blocks not fully written."""
        out = []
        for i, layer in enumerate(self.layers):
            for j, lang in enumerate(self.languages):
                todo = [list(self.blocks[k]) for k in np.flatnonzero(self.done[i, j] < 1)]
                if todo:
                    out.append({"layer": layer, "language": lang, "blocks": todo})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": list(self.layers),
            "languages": list(self.languages),
            "blocks": [list(b) for b in self.blocks],
            "done": self.done.round(6).tolist(),
            "fraction_complete": self.fraction,
            "complete": self.is_complete,
            "remaining": self.remaining(),
        }

    def render(self) -> str:
        """A text grid: a row per layer, a column of block marks per language."""
        n = len(self.blocks)
        lines = [
            f"{self.fraction:.1%} complete ({n} shard blocks of samples per layer and language; "
            f"{_DONE} done, {_PARTIAL} partial, {_TODO} to do)",
            "layer  " + "  ".join(f"{lang:<{max(n, 2)}}" for lang in self.languages),
        ]
        for i, layer in enumerate(self.layers):
            cells = [
                "".join(_DONE if d == 1 else _PARTIAL if d > 0 else _TODO for d in self.done[i, j])
                for j in range(len(self.languages))
            ]
            lines.append(f"{layer:>5}  " + "  ".join(f"{c:<{max(n, 2)}}" for c in cells))
        return "\n".join(lines)


def completion(store: ActivationStore, *, flag: str = S.COMPLETE, group: str | None = None) -> Completion:
    """Summarise the completion flags ``flag`` of ``group`` (root by default) per shard block."""
    flags = store.read_flags(flag, group)
    blocks = store.blocks
    done = np.stack([flags[..., b.start : b.stop].mean(axis=-1) for b in blocks], axis=-1)
    return Completion(
        layers=store.layout.layers,
        languages=store.layout.languages,
        blocks=[(b.start, b.stop) for b in blocks],
        done=done,
    )
