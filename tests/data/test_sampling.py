from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sae_store.data.sampling import allocate_proportional, stratified_indices

sizes = st.dictionaries(st.sampled_from(["male", "female", "ambiguous", "unknown"]), st.integers(0, 500))


@given(data=st.data(), available=sizes)
def test_allocation_sums_to_n_and_is_proportional(data: st.DataObject, available: dict[str, int]) -> None:
    total = sum(available.values())
    n = data.draw(st.integers(0, total))
    shares = allocate_proportional(available, n)
    assert list(shares) == list(available)
    assert sum(shares.values()) == n
    for k, share in shares.items():
        assert 0 <= share <= available[k]
        assert abs(share - n * available[k] / total) < 1 if total else share == 0


def test_allocation_largest_remainder() -> None:
    # exact shares 3.5, 2.1, 1.4 -> floors 3, 2, 1 and the one left goes to the largest remainder
    assert allocate_proportional({"a": 35, "b": 21, "c": 14}, 7) == {"a": 4, "b": 2, "c": 1}


def test_allocation_rejects_bad_n() -> None:
    with pytest.raises(ValueError, match=r"Cannot draw n=5 from strata holding 4"):
        allocate_proportional({"a": 4}, 5)
    with pytest.raises(ValueError, match=r"must be non-negative"):
        allocate_proportional({"a": 4}, -1)


def test_stratified_indices_deterministic_and_stratified() -> None:
    labels = ["male"] * 60 + ["female"] * 40
    first = stratified_indices(labels, 10, seed=3)
    assert first.tolist() == stratified_indices(labels, 10, seed=3).tolist()
    assert first.tolist() != stratified_indices(labels, 10, seed=4).tolist()
    assert Counter(labels[i] for i in first) == {"male": 6, "female": 4}
    assert sorted(set(first.tolist())) == first.tolist()


def test_stratum_choice_does_not_depend_on_other_strata() -> None:
    base = ["male"] * 20 + ["female"] * 20
    with_more = [*base, "ambiguous", "ambiguous"]
    a = stratified_indices(base, 20, seed=0)
    b = stratified_indices(with_more, 22, seed=0)
    males_a = [i for i in a if base[i] == "male"]
    males_b = [i for i in b if with_more[i] == "male"]
    assert males_a == males_b
