"""``ImpressionWriter``: impressions grouped into one append, in order, failures counted."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from hotshelf.config import LogConfig
from hotshelf.errors import UnavailableError
from hotshelf.log import AppendResult, EventLog, FileLog
from hotshelf.serving._impressions import ImpressionWriter


class CountingLog:
    """A real log, with its appends counted (how many, and how many values each)."""

    def __init__(self, log: FileLog) -> None:
        self.log = log
        self.appends: list[int] = []

    async def append_async(self, values: Sequence[bytes]) -> AppendResult:
        self.appends.append(len(values))
        return await self.log.append_async(values)


@pytest.fixture
def log(tmp_path: Path) -> CountingLog:
    return CountingLog(FileLog(tmp_path / "events", LogConfig(fsync=False)))


def writer_for(log: CountingLog, unlogged: list[int], delay_s: float) -> ImpressionWriter:
    def events_log() -> EventLog:
        return log  # type: ignore[return-value]  # only append_async is used

    return ImpressionWriter(events_log, unlogged.append, delay_s=delay_s)


def values(log: FileLog) -> list[bytes]:
    return [record.value for record in log.read(0, 100)]


def test_impressions_within_the_delay_go_as_one_append(log: CountingLog) -> None:
    unlogged: list[int] = []

    async def scenario() -> None:
        writer = writer_for(log, unlogged, delay_s=0.02)
        for i in range(5):
            writer.add(b"imp-%d" % i)
        assert writer.waiting == 5
        assert log.appends == []  # nothing until the delay is up
        await asyncio.sleep(0.1)
        assert writer.waiting == 0
        writer.add(b"imp-5")  # a new group, timed from its own first impression
        await writer.drain()

    asyncio.run(scenario())
    assert log.appends == [5, 1]
    assert values(log.log) == [b"imp-%d" % i for i in range(6)]
    assert unlogged == []


def test_flush_puts_waiting_impressions_before_the_next_append(log: CountingLog) -> None:
    # the ingest path flushes, then starts its own append as a task: tasks start in the
    # order they were made, so a click follows its impression in the log
    unlogged: list[int] = []

    async def scenario() -> None:
        writer = writer_for(log, unlogged, delay_s=10.0)
        writer.add(b"impression")
        writer.flush()
        await asyncio.ensure_future(log.append_async([b"click"]))
        await writer.drain()

    asyncio.run(scenario())
    assert values(log.log) == [b"impression", b"click"]


def test_a_closed_log_counts_the_group_as_unlogged_and_raises_nothing(log: CountingLog) -> None:
    unlogged: list[int] = []
    log.log.close()

    async def scenario() -> None:
        writer = writer_for(log, unlogged, delay_s=0.001)
        writer.add(b"a")
        writer.add(b"b")
        await writer.drain()

    asyncio.run(scenario())
    assert unlogged == [2]


def test_a_log_that_is_not_there_counts_the_group_too() -> None:
    unlogged: list[int] = []

    def stopping() -> EventLog:
        raise UnavailableError("the service is starting or stopping")

    async def scenario() -> None:
        writer = ImpressionWriter(stopping, unlogged.append)
        writer.add(b"a")
        await writer.drain()

    asyncio.run(scenario())
    assert unlogged == [1]


def test_drain_submits_and_waits_for_everything(log: CountingLog) -> None:
    unlogged: list[int] = []

    async def scenario() -> None:
        writer = writer_for(log, unlogged, delay_s=10.0)
        for i in range(3):
            writer.add(b"imp-%d" % i)
        await writer.drain()  # long before the 10 s delay
        assert log.log.end_offset == 3

    asyncio.run(scenario())
    assert log.appends == [3]
