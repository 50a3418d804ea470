"""DedupWindow: the window, its bound, reservations, and rebuilding from a real FileLog."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotshelf.config import LogConfig
from hotshelf.errors import ConflictError
from hotshelf.events import DedupWindow, EventType, StoredEvent, encode_stored_event
from hotshelf.log import FileLog

T0 = 1_700_000_000_000


@dataclass(frozen=True)
class E:
    event_id: str


def es(*ids: str) -> list[E]:
    return [E(i) for i in ids]


def ids(events: list[E]) -> list[str]:
    return [e.event_id for e in events]


def accept(window: DedupWindow, events: list[E], now_ms: int = T0) -> tuple[list[str], int]:
    fresh, dups = window.filter(events, now_ms=now_ms)
    window.confirm(fresh, now_ms=now_ms)
    return ids(fresh), dups


def test_duplicates_across_and_within_requests() -> None:
    window = DedupWindow(60, 100)
    assert accept(window, es("a", "b", "a")) == (["a", "b"], 1)
    assert accept(window, es("b", "c")) == (["c"], 1)
    assert len(window) == 3
    assert "a" in window


def test_window_expiry() -> None:
    window = DedupWindow(10, 100)
    accept(window, es("a"), T0)
    accept(window, es("b"), T0 + 5_000)
    assert accept(window, es("a", "b"), T0 + 10_000) == ([], 2)  # exactly at the edge: kept
    assert accept(window, es("a", "b"), T0 + 10_001) == (["a"], 1)
    assert accept(window, es("a", "b"), T0 + 15_001 + 10_000) == (["a", "b"], 0)


def test_max_ids_evicts_oldest_first() -> None:
    window = DedupWindow(3600, 3)
    for i in range(5):
        accept(window, es(str(i)), T0 + i)
    assert len(window) == 3
    assert [str(i) in window for i in range(5)] == [False, False, True, True, True]


def test_reservation_blocks_a_concurrent_request() -> None:
    window = DedupWindow(60, 100)
    first, _ = window.filter(es("x", "y"), now_ms=T0)
    assert window.pending == 2
    with pytest.raises(ConflictError) as info:
        window.filter(es("z", "x"), now_ms=T0)
    assert info.value.status == 409
    assert window.pending == 2  # z was not reserved by the refused request
    window.release(first)  # the append failed
    assert window.pending == 0
    assert accept(window, es("z", "x")) == (["z", "x"], 0)
    assert accept(window, es("x", "y")) == (["y"], 1)


def test_confirm_after_append() -> None:
    window = DedupWindow(60, 100)
    fresh, _ = window.filter(es("x"), now_ms=T0)
    window.confirm(fresh, now_ms=T0)
    assert window.pending == 0
    assert window.filter(es("x"), now_ms=T0) == ([], 1)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="max_ids"):
        DedupWindow(60, 0)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(st.sampled_from("abcdefgh"), max_size=6), st.integers(0, 4_000)),
        max_size=30,
    )
)
def test_matches_a_simple_model(steps: list[tuple[list[str], int]]) -> None:
    """Against a dict of id -> last stored time, with no bound on memory."""
    window = DedupWindow(5, 1_000)
    stored: dict[str, int] = {}
    now = T0
    for batch, advance in steps:
        now += advance
        fresh, dups = accept(window, es(*batch), now)
        expected = []
        for eid in batch:
            if eid in expected or (eid in stored and stored[eid] >= now - 5_000):
                continue
            expected.append(eid)
        assert fresh == expected
        assert dups == len(batch) - len(expected)
        stored.update(dict.fromkeys(fresh, now))


# -- concurrency on a real log ---------------------------------------------------------


def stored_event(eid: str) -> StoredEvent:
    return StoredEvent(event_id=eid, type=EventType.VIEW, ts_ms=T0, received_ms=T0, user_id="u")


def test_concurrent_requests_with_the_same_ids_append_once(tmp_path: Path) -> None:
    async def request(window: DedupWindow, log: FileLog, batch: list[str]) -> str:
        try:
            fresh, _ = window.filter([stored_event(e) for e in batch])
        except ConflictError:
            return "conflict"
        if not fresh:
            return "duplicate"
        try:
            await log.append_async([encode_stored_event(e) for e in fresh])
        except BaseException:
            window.release(fresh)
            raise
        window.confirm(fresh)
        return "appended"

    async def main(log: FileLog) -> list[str]:
        window = DedupWindow(60, 1000)
        batch = ["a", "b", "c"]
        return await asyncio.gather(*(request(window, log, batch) for _ in range(8)))

    with FileLog(tmp_path / "events", LogConfig(fsync=False)) as log:
        outcomes = asyncio.run(main(log))
        assert outcomes.count("appended") == 1
        assert log.end_offset == 3


# -- rebuild ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def fill(log: FileLog, clock: Clock, start: int, count: int, step_ms: int, batch: int) -> None:
    for i in range(start, start + count, batch):
        log.append([encode_stored_event(stored_event(f"e{j}")) for j in range(i, i + batch)])
        clock.now += step_ms


def test_rebuild_reloads_the_window_from_the_log(tmp_path: Path) -> None:
    clock = Clock()
    config = LogConfig(fsync=False, segment_roll="size")
    with FileLog(tmp_path / "events", config, clock=clock) as log:
        # 10,000 records, 100 per append, one append per second: spans ~100 s and
        # several rebuild chunks.
        fill(log, clock, 0, 10_000, 1_000, 100)
        window = DedupWindow(30, 1_000_000)
        loaded = window.rebuild(log, now_ms=clock.now)
    # appends at T0 + k s for k = 0..99; the window keeps those >= now - 30 s
    cutoff = clock.now - 30_000
    expected = {f"e{j}" for j in range(10_000) if T0 + (j // 100) * 1_000 >= cutoff}
    assert loaded == len(expected) == len(window)
    assert all(e in window for e in expected)
    assert "e0" not in window


def test_rebuild_keeps_the_newest_when_bounded(tmp_path: Path) -> None:
    clock = Clock()
    with FileLog(tmp_path / "events", LogConfig(fsync=False), clock=clock) as log:
        fill(log, clock, 0, 9_000, 0, 1_000)
        window = DedupWindow(3600, 5_000)
        assert window.rebuild(log, now_ms=clock.now) == 5_000
    assert "e8999" in window
    assert "e4000" in window
    assert "e3999" not in window


def test_rebuild_survives_a_restart_and_skips_foreign_records(tmp_path: Path) -> None:
    with FileLog(tmp_path / "events", LogConfig(fsync=True)) as log:
        log.append([encode_stored_event(stored_event("before-crash")), b"\x01not-an-event"])
    with FileLog(tmp_path / "events", LogConfig(fsync=True)) as log:
        window = DedupWindow(60, 100)
        assert window.rebuild(log) == 1
    assert window.filter([stored_event("before-crash")]) == ([], 1)


def test_rebuild_of_an_empty_log(tmp_path: Path) -> None:
    with FileLog(tmp_path / "events", LogConfig(fsync=False)) as log:
        assert DedupWindow(60, 10).rebuild(log) == 0
