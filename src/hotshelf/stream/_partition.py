"""Partitions: several processor processes share the stream by visitor key.

Partition ``i`` of ``n`` applies an event only when ``crc32(key) % n == i``, where
``key`` is the event's visitor: its user id, else its cookie id, else its session id
(the same visitor the state's contribution gate counts; events with none go to
partition 0). Catalog records are applied by every partition. So every per-visitor
structure (distinct-visitor admission, histories, a visitor's co-engagement) lives
in exactly one partition, and summing the partitions (``StateView``) gives counts
and units that add up to what one processor would have.

What it costs and what it does not split: every partition still reads and decodes
the whole events topic (~1 us per event) and skips what is not its own; only the
bot filter and the state update (~10 us per event) divide N ways. State keyed by
something other than the visitor is judged per partition: the per-IP bot checks and
the per-IP visitor cap see only that partition's visitors of an IP (an IP's visitors
may count up to the cap in each partition), and a session whose events carry a user
id only part of the time (a sign-in mid-session) is split between two partitions.

The spike guard sees a partition's share of an item's new visitors. Its allowance is
the largest of a floor, the previous interval's demand and median + k * MAD of past
intervals; all but the floor shrink with the share by themselves, so each partition's
state gets ``spike_floor / N`` (rounded up, ``partition_config``) and the partitions
together admit about what one processor would. Near the allowance the split still
changes which visitors get in, so trend units can differ a little from one process's.
CRC32 is fixed (not Python's salted ``hash``), so an event's partition is the same
in every process and every replay: the exactly-once guarantees hold per partition.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import msgspec

from hotshelf.config import StreamConfig
from hotshelf.errors import ConfigError
from hotshelf.events import StoredEvent

__all__ = [
    "Partition",
    "check_partition",
    "parse_partition",
    "partition_config",
    "partition_of",
    "visitor_key",
]


@dataclass(frozen=True, slots=True)
class Partition:
    """Partition ``index`` of ``count``; build it with ``check_partition``."""

    index: int
    count: int

    @property
    def pair(self) -> tuple[int, int]:
        """``(index, count)``, the form the processor's arguments take."""
        return (self.index, self.count)

    @property
    def name(self) -> str:
        """``p<index>of<count>``: in consumer group names and Redis keys."""
        return f"p{self.index}of{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def check_partition(partition: tuple[int, int]) -> Partition:
    """``partition`` as a ``Partition``; ``ConfigError`` unless ``0 <= index < count``."""
    index, count = partition
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"partition {index}/{count}: need 0 <= index < count")
    return Partition(index, count)


def parse_partition(text: str, default_count: int) -> Partition:
    """``"I/N"`` (or ``"I"``, meaning ``I/default_count``) as a ``Partition``."""
    index, _, count = text.partition("/")
    try:
        return check_partition((int(index), int(count) if count else default_count))
    except ValueError:
        raise ConfigError(f"partition {text!r}: expected I/N, e.g. 0/2") from None


def visitor_key(event: StoredEvent) -> str | None:
    """The visitor an event belongs to (as ``StreamState`` counts it), or None."""
    return event.user_id or event.cookie_id or event.session_id


def partition_of(key: str | None, count: int) -> int:
    """The partition of ``count`` that owns visitor ``key`` (0 for events without one)."""
    return 0 if key is None else zlib.crc32(key.encode()) % count


def partition_config(config: StreamConfig, partition: Partition | None) -> StreamConfig:
    """The settings of one partition's ``StreamState``: the spike floor split N ways.

    Every other term of the guard's allowance scales with the partition's share of the
    visitors on its own; an unsplit floor would let N partitions admit N floors.
    """
    if partition is None or partition.count == 1:
        return config
    floor = math.ceil(config.spike_floor / partition.count)
    return msgspec.structs.replace(config, spike_floor=floor)
