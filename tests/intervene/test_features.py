"""Feature set specs and random control sets."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from sae_store.errors import ConfigError, SaeStoreError
from sae_store.intervene.features import (
    FeatureSpec,
    parse_feature_spec,
    random_feature_sets,
    resolve_features,
)

RANKED = {"male": [40, 7, 12, 3], "female": [5, 60]}


def test_parse_and_resolve() -> None:
    spec = parse_feature_spec("top-male:3")
    assert (
        spec == FeatureSpec(kind="male", count=3)
        and spec.label == "male_biased"
        and str(spec) == "top-male:3"
    )
    assert resolve_features(spec, RANKED, 64) == (40, 7, 12)
    assert resolve_features(parse_feature_spec("top-female:2"), RANKED, 64) == (5, 60)
    listed = parse_feature_spec(" 12, 97,431")
    assert listed.indices == (12, 97, 431) and listed.label == "custom"
    assert resolve_features(listed, None, 500) == (12, 97, 431)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("top-male:0", "selects no feature"),
        ("top-men:3", "must be 'top-male:N', 'top-female:N' or comma-separated"),
        ("1,2,2", "repeats an index"),
        ("", "must be 'top-male:N'"),
        ("-1,4", "must be 'top-male:N'"),
    ],
)
def test_bad_specs(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_feature_spec(text)


def test_resolve_refusals() -> None:
    with pytest.raises(
        SaeStoreError, match="need the layer's male-biased feature ranking; run `sae-store analyze`"
    ):
        resolve_features(parse_feature_spec("top-male:2"), None, 64)
    with pytest.raises(
        SaeStoreError,
        match="features 'top-female:20': the bias analysis found no significant female-biased feature at "
        "this layer; try another layer, 'top-male:N', or explicit indices",
    ):
        resolve_features(parse_feature_spec("top-female:20"), {"male": [1], "female": []}, 64)
    with pytest.raises(
        SaeStoreError, match=r"feature indices \[64, 99\] are out of range: the SAE has d_sae=64"
    ):
        resolve_features(parse_feature_spec("3,64,99"), None, 64)
    with pytest.raises(SaeStoreError, match=r"\[40\] are out of range"):
        resolve_features(parse_feature_spec("top-male:1"), RANKED, 40)


def test_fewer_biased_features_than_asked_uses_those_found(caplog: pytest.LogCaptureFixture) -> None:
    # the default top-male:20 on a run whose analysis found fewer: the significant ones, with a warning
    with caplog.at_level(logging.WARNING, logger="sae_store.intervene.features"):
        got = resolve_features(parse_feature_spec("top-female:20"), RANKED, 64)
    assert got == tuple(RANKED["female"])
    assert (
        "asks for 20 female-biased features, but the bias analysis found 2 significant ones; using those 2"
        in (caplog.text)
    )


def test_random_sets_are_seeded_disjoint_from_the_target_and_prefix_stable() -> None:
    pool = np.arange(100)
    sets = random_feature_sets(12, 5, pool=pool, exclude=[1, 2, 3], seed=7)
    assert len(sets) == 12 and all(len(set(s)) == 5 and s == tuple(sorted(s)) for s in sets)
    assert not {1, 2, 3} & set().union(*sets)
    assert sets == random_feature_sets(12, 5, pool=pool, exclude=[1, 2, 3], seed=7)
    assert sets[:10] == random_feature_sets(10, 5, pool=pool, exclude=[1, 2, 3], seed=7)
    assert sets != random_feature_sets(12, 5, pool=pool, exclude=[1, 2, 3], seed=8)
    assert len(set(sets)) == 12
    with pytest.raises(SaeStoreError, match="need at least 5 candidate features, but only 3 fire outside"):
        random_feature_sets(10, 5, pool=[1, 2, 3, 4, 5, 6], exclude=[1, 2, 3], seed=0)
