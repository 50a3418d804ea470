"""The visitor x item matrix from the event logs: weights per type, log order, bots left
out exactly as the stream processor's filter says, hold-out and fold-in inputs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest

from hotshelf.config import CollaborativeConfig, Config, RecommendConfig
from hotshelf.events import EventType, StoredEvent, encode_stored_event
from hotshelf.log import FileLog
from hotshelf.recommend._interactions import Interactions, read_interactions, visitor_key
from hotshelf.simulation import Label, SimConfig, SimEvent, StoreSimulator
from hotshelf.stream import default_bot_filter_factory
from tests.stream.simulated import config, stored

T0 = 1_750_000_000_000


def event(kind: str, visitor: str, item: str | list[str], n: int, **fields: object) -> StoredEvent:
    """A human-looking event; a list of items makes a purchase's ``item_ids``."""
    items = {"item_ids": item} if isinstance(item, list) else {"item_id": item}
    return StoredEvent(
        event_id=f"e{n}", type=EventType(kind), ts_ms=T0 + n * 60_000, received_ms=T0,
        cookie_id=visitor, user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        **items, **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def append(log: FileLog, events: list[StoredEvent], chunk: int = 1000) -> None:
    for start in range(0, len(events), chunk):
        log.append([encode_stored_event(e) for e in events[start : start + chunk]])


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[tuple[FileLog, FileLog]]:
    cfg = config(tmp_path)
    events, batch = FileLog(tmp_path / "events", cfg.log), FileLog(tmp_path / "batch", cfg.log)
    yield events, batch
    events.close()
    batch.close()


def with_cf(cfg: Config, **cf: object) -> Config:
    recommend = RecommendConfig(cf=msgspec.convert(cf, CollaborativeConfig))
    return msgspec.structs.replace(cfg, recommend=recommend)


def test_the_visitor_is_the_user_when_signed_in_else_the_cookie() -> None:
    assert visitor_key("u1", "c1") == "u1"
    assert visitor_key(None, "c1") == "c1"
    assert visitor_key("", "c1") == "c1"
    assert visitor_key(None, None) is None


def test_weights_by_type_are_summed_per_pair_and_other_types_ignored(
    tmp_path: Path, logs: tuple[FileLog, FileLog]
) -> None:
    events_log, _ = logs
    append(events_log, [
        event("view", "a", "i1", 0), event("view", "a", "i1", 1), event("click", "a", "i2", 2),
        event("add_to_cart", "a", "i2", 3), event("purchase", "a", ["i2", "i3", "i2"], 4),
        event("impression", "a", ["i4", "i5"], 5), event("search", "b", "i6", 6, query="x"),
        event("view", "b", "i3", 7, user_id="user-b"),
    ])  # fmt: skip
    cfg = with_cf(config(tmp_path), event_weights={"view": 1.0, "add_to_cart": 3.0,
                                                   "purchase": 10.0})  # fmt: skip
    found = read_interactions(cfg, events_log)
    assert found.row("a") == {"i1": 2.0, "i2": 13.0, "i3": 10.0}  # no click weight, i2 once
    assert found.row("user-b") == {"i3": 1.0}  # the user, not the cookie
    assert found.row("b") == {}
    assert set(found.items) == {"i1", "i2", "i3"}  # impressions and searches are no feedback
    assert found.n_interactions == 4
    assert found.stats.records == 8
    assert found.stats.feedback == 6
    assert found.offsets == {"events": 8}
    dense = found.matrix.toarray()
    assert dense[found.visitor_index["a"], found.item_index["i2"]] == 13.0


def test_the_batch_log_is_history_read_before_the_live_log(
    tmp_path: Path, logs: tuple[FileLog, FileLog]
) -> None:
    events_log, batch_log = logs
    append(events_log, [event("view", "a", "new", 10)])
    append(batch_log, [event("view", "a", "old", 1), event("add_to_cart", "a", "old", 2),
                       event("view", "a", "older", 3)])  # fmt: skip
    found = read_interactions(config(tmp_path), events_log, batch_log)
    assert found.offsets == {"events.batch": 3, "events": 1}
    assert found.recent_items("a", 10) == {"old": 5.0, "older": 1.0, "new": 1.0}
    assert found.recent_items("a", 2) == {"older": 1.0, "new": 1.0}
    assert found.recent_items("nobody", 2) == {}


def test_undecodable_records_are_skipped_and_counted(
    tmp_path: Path, logs: tuple[FileLog, FileLog]
) -> None:
    events_log, _ = logs
    events_log.append([b"not msgpack", encode_stored_event(event("view", "a", "i1", 1))])
    found = read_interactions(config(tmp_path), events_log)
    assert (found.stats.skipped, found.stats.feedback) == (1, 1)


def test_visitors_with_too_few_events_and_items_only_they_engaged_are_dropped(
    tmp_path: Path, logs: tuple[FileLog, FileLog]
) -> None:
    events_log, _ = logs
    append(events_log, [event("view", "a", "i1", 0), event("view", "a", "i2", 1),
                        event("view", "b", "i3", 2), event("view", "b", "i1", 3),
                        event("view", "c", "i4", 4)])  # fmt: skip
    found = read_interactions(with_cf(config(tmp_path), min_user_events=2), events_log)
    assert found.visitors == ["a", "b"]
    assert found.items == ["i1", "i2", "i3"]
    assert found.row("b") == {"i3": 1.0, "i1": 1.0}
    assert found.matrix.shape == (2, 3)


def test_hold_out_last_takes_every_event_on_the_last_item_of_visitors_with_three(
    tmp_path: Path, logs: tuple[FileLog, FileLog]
) -> None:
    events_log, _ = logs
    append(events_log, [
        event("view", "a", "i3", 0), event("view", "a", "i1", 1), event("view", "b", "i1", 2),
        event("view", "a", "i2", 3), event("add_to_cart", "a", "i3", 4),
        event("view", "b", "i2", 5), event("view", "b", "i1", 6),
    ])  # fmt: skip
    found = read_interactions(config(tmp_path), events_log)
    split, held = found.hold_out_last(3)
    assert held == {"a": "i3"}  # b has two items only
    assert split.row("a") == {"i1": 1.0, "i2": 1.0}  # both events on i3 left out
    assert split.row("b") == found.row("b")
    assert (split.visitors, split.items) == (found.visitors, found.items)
    assert found.hold_out_last(2)[1] == {"a": "i3", "b": "i1"}


# -- simulated traffic with bots ------------------------------------------------------


Simulated = tuple[Path, StoreSimulator, list[SimEvent]]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Simulated:
    sim = StoreSimulator(SimConfig(seed=4, n_items=200, n_visitors=600))
    sim_events = list(sim.events(20_000))
    root = tmp_path_factory.mktemp("sim")
    log = FileLog(root / "events", config(root).log)
    append(log, list(stored(sim_events)))
    log.close()
    return root, sim, sim_events


def read_simulated(root: Path, cfg: Config) -> Interactions:
    with FileLog(root / "events", cfg.log) as log:
        return read_interactions(cfg, log)


def test_bot_events_are_left_out_exactly_as_the_stream_filter_flags_them(
    simulated: Simulated,
) -> None:
    root, _, sim_events = simulated
    cfg = config(root)
    found = read_simulated(root, cfg)
    # the filter the stream processor builds, run over the same events by hand
    bots = default_bot_filter_factory(cfg)(None)
    kept = [e for e in stored(sim_events) if not bots.check(e).is_bot]
    weights = cfg.recommend.cf.event_weights
    expected: dict[tuple[str, str], float] = {}
    for e in kept:
        visitor = visitor_key(e.user_id, e.cookie_id)
        for item in [e.item_id] if e.item_id else dict.fromkeys(e.item_ids or ()):
            if e.type.value in weights and visitor is not None:
                key = (visitor, item)
                expected[key] = expected.get(key, 0.0) + weights[e.type.value]
    coo = found.matrix.tocoo()
    actual = {(found.visitors[r], found.items[c]): float(w)
              for r, c, w in zip(coo.row, coo.col, coo.data, strict=True)}  # fmt: skip
    assert actual == expected
    assert found.stats.bot_events == len(sim_events) - len(kept) > 0


def test_crawlers_shape_nothing_unless_the_bot_filter_is_off(
    simulated: Simulated,
) -> None:
    root, sim, _ = simulated
    crawlers = {c for c, label in sim.ground_truth.bot_cookies.items() if label is Label.CRAWLER}
    filtered = read_simulated(root, config(root))
    assert not crawlers & set(filtered.visitors)
    unfiltered_cfg = msgspec.structs.replace(
        config(root), bots=msgspec.structs.replace(config(root).bots, enabled=False)
    )
    unfiltered = read_simulated(root, unfiltered_cfg)
    assert crawlers <= set(unfiltered.visitors)
    assert unfiltered.stats.bot_events == 0
    assert unfiltered.n_interactions > filtered.n_interactions


def test_the_matrix_is_canonical_csr_of_float32(
    simulated: Simulated,
) -> None:
    root, _, _ = simulated
    matrix = read_simulated(root, config(root)).matrix
    assert matrix.dtype == np.float32
    assert matrix.has_canonical_format
    assert (matrix.data > 0).all()
