"""Stream processing: bot filtering and trend state derived from the events log.

``StreamProcessor`` consumes the events and catalog topics (merged deterministically),
checks every event with a ``BotFilter`` and applies it to a ``StreamState``; snapshots
hold the state with the log offsets it reflects, so a restart resumes exactly once
and a replay from offset 0 gives byte-identical state.
"""

from hotshelf.stream._bot_filter import BotFilter, BotRecord, Verdict
from hotshelf.stream._bot_rules import BOT_USER_AGENTS
from hotshelf.stream._freshness import FreshnessSummary
from hotshelf.stream._history import History
from hotshelf.stream._processor import (
    BotFilterFactory,
    StreamProcessor,
    default_bot_filter_factory,
)
from hotshelf.stream._state import Counts, ItemScore, StreamState

__all__ = [
    "BOT_USER_AGENTS",
    "BotFilter",
    "BotFilterFactory",
    "BotRecord",
    "Counts",
    "FreshnessSummary",
    "History",
    "ItemScore",
    "StreamProcessor",
    "StreamState",
    "Verdict",
    "default_bot_filter_factory",
]
