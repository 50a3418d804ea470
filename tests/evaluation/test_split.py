"""The time-based split: nothing from at or after the split time reaches training."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotshelf.errors import ValidationError
from hotshelf.evaluation import Interaction, split_by_time, time_at_share
from hotshelf.events import EventType
from tests.evaluation.conftest import tiny_dataset, view

INTERACTIONS = st.lists(
    st.builds(
        Interaction,
        visitor=st.sampled_from(["v1", "v2", "v3"]),
        item=st.sampled_from(["a", "b", "c", "d"]),
        timestamp=st.floats(0, 100, allow_nan=False),
        kind=st.sampled_from([EventType.VIEW, EventType.PURCHASE]),
        session=st.none() | st.sampled_from(["s1", "s2"]),
    ),
    min_size=2,
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(interactions=INTERACTIONS, cut=st.floats(0, 100, allow_nan=False))
def test_the_split_never_leaks_later_interactions_into_training(
    interactions: list[Interaction], cut: float
) -> None:
    dataset = tiny_dataset(*interactions, split_time=cut)
    try:
        split = split_by_time(dataset)
    except ValidationError:
        # only when one side would be empty
        assert all(i.timestamp < cut for i in interactions) or all(
            i.timestamp >= cut for i in interactions
        )
        return
    assert all(i.timestamp < cut for i in split.train.interactions)
    assert all(i.timestamp >= cut for i in split.test)
    # nothing lost or invented, and time order kept on both sides
    assert sorted(split.train.interactions + split.test, key=repr) == sorted(interactions, key=repr)
    times = [i.timestamp for i in split.train.interactions + split.test]
    assert times == sorted(times)
    assert split.train.at == cut


def test_an_explicit_time_overrides_the_datasets() -> None:
    dataset = tiny_dataset(view("v", "a", 1), view("v", "b", 2), view("v", "c", 3), split_time=3)
    assert [i.item for i in split_by_time(dataset, at=2).test] == ["b", "c"]
    assert split_by_time(dataset).train.catalog() == {"a", "b"}


def test_a_split_with_an_empty_side_is_refused() -> None:
    dataset = tiny_dataset(view("v", "a", 1), view("v", "b", 2), split_time=5)
    with pytest.raises(ValidationError, match="both sides need some"):
        split_by_time(dataset)


def test_time_at_share_is_the_first_time_past_that_share() -> None:
    interactions = [view("v", str(n), float(n)) for n in (3, 9, 0, 8, 1, 7, 2, 6, 4, 5)]
    assert time_at_share(interactions, 0.8) == 8.0
    with pytest.raises(ValidationError, match="strictly between 0 and 1"):
        time_at_share(interactions, 1.0)
    with pytest.raises(ValidationError, match="no interactions"):
        time_at_share([], 0.5)
