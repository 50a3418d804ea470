"""Stream processing: bot filtering and trend state derived from the events log.

``StreamProcessor`` consumes the events and catalog topics (merged deterministically),
checks every event with a ``BotFilter`` and applies it to a ``StreamState``; snapshots
hold the state with the log offsets it reflects, so a restart resumes exactly once
and a replay from offset 0 gives byte-identical state.

Scale-out: ``StreamProcessor(..., partition=(i, n))`` applies only its share of the
visitors; with ``snapshot_store=RedisSnapshotStore(...)`` (``hotshelf stream run
--partition I/N``) its snapshots go to Redis, where ``RemoteState`` merges every
partition's state for queries.
"""

from typing import TYPE_CHECKING

from hotshelf.stream._answers import BotRecord, Counts, History, ItemScore, Verdict
from hotshelf.stream._bot_filter import BotFilter
from hotshelf.stream._bot_rules import BOT_USER_AGENTS
from hotshelf.stream._freshness import FreshnessSummary
from hotshelf.stream._partition import Partition
from hotshelf.stream._processor import (
    BotFilterFactory,
    StreamProcessor,
    default_bot_filter_factory,
)
from hotshelf.stream._state import StreamState
from hotshelf.stream._view import StateQueries, StateView

if TYPE_CHECKING:
    from hotshelf.stream._redis_state import RedisSnapshotStore
    from hotshelf.stream._remote import RemoteState

__all__ = [
    "BOT_USER_AGENTS",
    "BotFilter",
    "BotFilterFactory",
    "BotRecord",
    "Counts",
    "FreshnessSummary",
    "History",
    "ItemScore",
    "Partition",
    "RedisSnapshotStore",
    "RemoteState",
    "StateQueries",
    "StateView",
    "StreamProcessor",
    "StreamState",
    "Verdict",
    "default_bot_filter_factory",
]


def __getattr__(name: str) -> object:
    # The Redis-backed parts load on first use: file-backend users never import redis
    # (as ``hotshelf.log.open_log`` does for the log).
    if name == "RedisSnapshotStore":
        from hotshelf.stream._redis_state import RedisSnapshotStore

        return RedisSnapshotStore
    if name == "RemoteState":
        from hotshelf.stream._remote import RemoteState

        return RemoteState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
