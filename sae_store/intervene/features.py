"""Choosing the features to edit: ``top-male:20``, ``top-female:20`` or an explicit list, and random
control sets of the same size."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from sae_store.errors import ConfigError, SaeStoreError

__all__ = ["FeatureSpec", "parse_feature_spec", "random_feature_sets", "resolve_features"]

log = logging.getLogger(__name__)

_TOP = re.compile(r"^top-(male|female):(\d+)$")
_LIST = re.compile(r"^\d+(,\d+)*$")


@dataclass(frozen=True)
class FeatureSpec:
    """A feature set as the user named it."""

    kind: Literal["male", "female", "list"]
    """``"male"``/``"female"``: the top male-/female-biased features of the layer's bias analysis;
    ``"list"``: explicit indices."""
    count: int = 0
    """How many top features (``"male"``/``"female"``)."""
    indices: tuple[int, ...] = ()
    """The explicit indices (``"list"``)."""

    @property
    def label(self) -> str:
        """``"male_biased"``, ``"female_biased"`` or ``"custom"``: the key prefix of the results."""
        return "custom" if self.kind == "list" else f"{self.kind}_biased"

    def __str__(self) -> str:
        return ",".join(map(str, self.indices)) if self.kind == "list" else f"top-{self.kind}:{self.count}"


def parse_feature_spec(text: str) -> FeatureSpec:
    """Parse ``"top-male:N"``, ``"top-female:N"`` or ``"i,j,k"`` (distinct non-negative integers).

    Raises
    ------
    ConfigError
        For any other text, a count of 0 or repeated indices.
    """
    text = text.strip().replace(" ", "")
    m = _TOP.match(text)
    if m:
        count = int(m.group(2))
        if count < 1:
            raise ConfigError(f"features {text!r} selects no feature; use a count >= 1, e.g. 'top-male:20'")
        return FeatureSpec(kind="male" if m.group(1) == "male" else "female", count=count)
    if _LIST.match(text):
        indices = tuple(int(i) for i in text.split(","))
        if len(set(indices)) != len(indices):
            raise ConfigError(f"features {text!r} repeats an index; list each feature once")
        return FeatureSpec(kind="list", indices=indices)
    raise ConfigError(
        "features must be 'top-male:N', 'top-female:N' or comma-separated indices like '12,97,431'; "
        f"got {text!r}"
    )


def resolve_features(
    spec: FeatureSpec, ranked: Mapping[str, Sequence[int]] | None, d_sae: int
) -> tuple[int, ...]:
    """The feature indices ``spec`` stands for.

    Parameters
    ----------
    spec : FeatureSpec
        Parsed ``--features``.
    ranked : mapping, optional
        ``{"male": [...], "female": [...]}``: the layer's biased features, strongest first (from the
        bias analysis); needed for ``top-male``/``top-female``.
    d_sae : int
        Features of the SAE; every index must be below it.

    Raises
    ------
    SaeStoreError
        If the ranking is missing or empty, or an index is ``>= d_sae``. A ranking shorter than the
        count gives all of its features, with a logged warning.
    """
    if spec.kind == "list":
        features = spec.indices
    else:
        if ranked is None or spec.kind not in ranked:
            raise SaeStoreError(
                f"features {str(spec)!r} need the layer's {spec.kind}-biased feature ranking; run "
                "`sae-store analyze` for this layer first, or pass explicit indices like '12,97,431'"
            )
        available = list(ranked[spec.kind])
        if not available:
            other = "female" if spec.kind == "male" else "male"
            raise SaeStoreError(
                f"features {str(spec)!r}: the bias analysis found no significant {spec.kind}-biased feature "
                f"at this layer; try another layer, 'top-{other}:N', or explicit indices like '12,97,431'"
            )
        if len(available) < spec.count:
            # the default top-male:20 should work on any real run: take the significant ones there are
            log.warning(
                "features %r asks for %d %s-biased features, but the bias analysis found %d significant "
                "ones; using those %d",
                str(spec), spec.count, spec.kind, len(available), len(available),
            )  # fmt: skip
        features = tuple(int(i) for i in available[: spec.count])
    bad = [i for i in features if not 0 <= i < d_sae]
    if bad:
        raise SaeStoreError(
            f"feature indices {bad} are out of range: the SAE has d_sae={d_sae} features (0..{d_sae - 1})"
        )
    return features


def random_feature_sets(
    n_sets: int, size: int, *, pool: Sequence[int] | np.ndarray, exclude: Sequence[int], seed: int
) -> list[tuple[int, ...]]:
    """``n_sets`` random feature sets of ``size`` distinct features each, drawn from ``pool``.

    Set ``k`` depends only on ``(seed, k)``, the pool and ``exclude``, so asking for more sets keeps
    the first ones.

    Raises
    ------
    SaeStoreError
        If the pool without ``exclude`` has fewer than ``size`` features.
    """
    candidates = np.setdiff1d(np.asarray(pool, dtype=np.int64), np.asarray(exclude, dtype=np.int64))
    if candidates.size < size:
        raise SaeStoreError(
            f"random control sets of {size} features need at least {size} candidate features, but only "
            f"{candidates.size} fire outside the targeted set; use fewer features or more samples"
        )
    return [
        tuple(
            sorted(int(i) for i in np.random.default_rng([seed, k]).choice(candidates, size, replace=False))
        )
        for k in range(n_sets)
    ]
