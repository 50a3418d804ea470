"""Cases per shopper type: who counts as new, returning or browsing, and what they are asked."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotshelf.errors import ValidationError
from hotshelf.evaluation import (
    Case,
    Interaction,
    ShopperType,
    build_cases,
    sample_cases,
    sessionize,
    split_by_time,
)
from hotshelf.events import EventType
from tests.evaluation.conftest import tiny_dataset, view


def _cases(*interactions: Interaction, split_time: float, repeats: bool = True) -> list[Case]:
    dataset = tiny_dataset(*interactions, split_time=split_time, repeats=repeats)
    return build_cases(split_by_time(dataset))


def test_each_shopper_type_is_built_from_what_the_split_allows() -> None:
    cases = _cases(
        view("old", "a", 1), view("old", "b", 2), view("old", "c", 3),
        view("old", "d", 11), view("old", "a", 12),                    # returns, rebuys a
        view("fresh", "e", 13),                                        # first seen after
        view("anon", "a", 14, "s1"), view("anon", "b", 15, "s1"),
        view("anon", "a", 16, "s1"), view("anon", "f", 17, "s1"),      # a session
        split_time=10,
    )  # fmt: skip
    by_type = {c.shopper: [x for x in cases if x.shopper is c.shopper] for c in cases}
    (returning,) = by_type[ShopperType.RETURNING]
    assert returning.visitor == "old"
    assert returning.history == ("a", "b", "c")
    assert returning.truth == {"d", "a"}  # repeats allowed: history may come back
    assert returning.context == ()
    assert returning.at == 11
    new = {c.visitor: c for c in by_type[ShopperType.NEW]}
    assert set(new) == {"fresh", "anon"}
    assert new["anon"].truth == {"a", "b", "f"}
    assert new["anon"].history == ()
    (browsing,) = by_type[ShopperType.BROWSING]
    # three distinct items in the session: two are context, the last is the truth
    assert browsing.context_items == ("a", "b")
    assert browsing.current_item == "b"
    assert browsing.truth == {"f"}
    assert browsing.exclude == {"a", "b"}
    assert browsing.session == "s1"
    assert browsing.at == 15


def test_without_repeats_history_is_excluded_from_truth_and_lists() -> None:
    cases = _cases(
        view("u", "a", 1), view("u", "b", 2), view("u", "a", 11), view("u", "c", 12),
        split_time=10, repeats=False,
    )  # fmt: skip
    (case,) = cases
    assert case.truth == {"c"}
    assert case.exclude == {"a", "b"}


def test_context_is_capped_and_sessions_from_before_the_split_are_skipped() -> None:
    session = [view("s", item, 20 + n, "long") for n, item in enumerate("abcdefg")]
    straddling = [view("t", "a", 5, "cut"), view("t", "b", 21, "cut"), view("t", "c", 22, "cut")]
    cases = _cases(view("x", "a", 1), *session, *straddling, split_time=10)
    (browsing,) = [c for c in cases if c.shopper is ShopperType.BROWSING]
    assert browsing.session == "long"
    assert browsing.context_items == ("a", "b", "c")
    assert browsing.truth == {"d", "e", "f", "g"}


def test_a_session_with_one_distinct_item_is_no_browsing_case() -> None:
    cases = _cases(
        view("x", "a", 1), view("s", "a", 11, "s"), view("s", "a", 12, "s"), split_time=10
    )
    assert [c.shopper for c in cases] == [ShopperType.NEW]


def test_sample_cases_caps_each_type_reproducibly() -> None:
    interactions = [view("seed", "z", 1)]
    for n in range(20):
        interactions += [view(f"v{n}", "a", 11 + n, f"s{n}"), view(f"v{n}", "b", 11.5 + n, f"s{n}")]
    cases = _cases(*interactions, split_time=10)
    assert len(cases) == 40
    first = sample_cases(cases, 5, seed=1)
    assert sorted(c.shopper for c in first) == ["browsing"] * 5 + ["new"] * 5
    assert first == sample_cases(cases, 5, seed=1)
    assert first != sample_cases(cases, 5, seed=2)
    assert sample_cases(cases, None, seed=1) == cases
    with pytest.raises(ValidationError, match="max_cases"):
        sample_cases(cases, 0, seed=1)


def test_sessionize_cuts_at_thirty_idle_minutes() -> None:
    out = sessionize(
        [view("u", "a", 0), view("u", "b", 1799), view("u", "c", 3700), view("w", "a", 5)]
    )
    assert [(i.item, i.session) for i in out] == [
        ("a", "u#0"), ("b", "u#0"), ("c", "u#1"), ("a", "w#0"),
    ]  # fmt: skip


INTERACTIONS = st.lists(
    st.builds(
        Interaction,
        visitor=st.sampled_from(["v1", "v2", "v3", "v4"]),
        item=st.sampled_from(["a", "b", "c", "d", "e"]),
        timestamp=st.integers(0, 40).map(float),
        kind=st.just(EventType.VIEW),
        session=st.none() | st.sampled_from(["s1", "s2", "s3"]),
    ),
    min_size=2,
    max_size=50,
)


@settings(max_examples=150, deadline=None)
@given(interactions=INTERACTIONS, repeats=st.booleans())
def test_every_case_keeps_the_rules(interactions: list[Interaction], repeats: bool) -> None:
    interactions = [i for i in interactions if i.timestamp != 20] + [view("v0", "a", 1)]
    dataset = tiny_dataset(*interactions, split_time=20, repeats=repeats)
    if all(i.timestamp < 20 for i in interactions):
        return
    split = split_by_time(dataset)
    trained = {i.visitor for i in split.train.interactions}
    for case in build_cases(split):
        assert case.truth
        assert not case.truth & case.exclude
        assert set(case.context_items) <= case.exclude
        assert (case.shopper is ShopperType.RETURNING) == (
            case.visitor in trained and not case.context
        )
        assert bool(case.history) == (case.visitor in trained)
        assert all(c.timestamp >= 20 for c in case.context)
        if not repeats:
            assert set(case.history) <= case.exclude
