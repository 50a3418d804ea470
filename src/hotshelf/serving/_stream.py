"""The stream state behind the read endpoints: a processor in the service, or partitions'.

``StreamRunner`` (the embedded default, ``stream.partitions = 1``) builds a
``StreamProcessor`` over the service's logs (live events, the batch lane's
``events.batch`` and the catalog; it restores its snapshot there), runs
``processor.run`` in a daemon thread until ``close`` and answers the read endpoints
from its state. Queries hold the processor's lock, so each takes what it needs inside
``reading()`` and builds its answer after; they block on that lock while a batch is
applied, so the app runs them off the event loop.

With ``write_snapshots=False`` (a recommend replica, over log followers) the
processor restores the server's latest snapshot and follows its logs, writing nothing.

``RemoteReader`` (``stream.partitions > 1``) runs no processor: partitions run as
``hotshelf stream run --partition I/N`` processes and the endpoints answer from their
snapshots in Redis, merged by ``RemoteState``.
"""

from __future__ import annotations

import abc
import gc
import threading
import time
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Literal, Protocol

from hotshelf.monitoring import get_logger
from hotshelf.serving._queries import (
    BotsQuery,
    RankQuery,
    RelatedQuery,
    check_related,
    rank_window,
)
from hotshelf.serving._schemas import BotCounts, Bots, RankedItems, RelatedItems, Segment
from hotshelf.stream import (
    BotRecord,
    StateQueries,
    StreamProcessor,
    default_bot_filter_factory,
)

if TYPE_CHECKING:
    from hotshelf.config import Config
    from hotshelf.log import EventLog

__all__ = ["RemoteReader", "StreamRunner", "open_stream"]

_logger = get_logger("hotshelf.stream")
# How long close() waits for the last batch and the final snapshot.
STOP_TIMEOUT_S = 120.0
_REASON = "reason:"


class StateSource(Protocol):
    """Where the queries read: ``StreamProcessor`` or ``RemoteState``."""

    def reading(self) -> AbstractContextManager[StateQueries]: ...

    def bot_verdicts(self, limit: int = ...) -> list[BotRecord]: ...

    def bot_stats(self) -> dict[str, int]: ...


class _Queries(abc.ABC):
    """The read endpoints over ``source``; ``lag`` says how far behind it is."""

    config: Config
    bots_enabled: bool
    source: StateSource

    @abc.abstractmethod
    def lag(self) -> dict[str, int]:
        """Records per topic the state does not reflect yet."""

    # -- queries ------------------------------------------------------------------------

    def ranked(self, which: Literal["trending", "popular"], query: RankQuery) -> RankedItems:
        """Trending or popular items in a segment over one window."""
        window = rank_window(query, self.config.stream)
        with self.source.reading() as reader:
            rank = reader.trending if which == "trending" else reader.popular
            items = rank(query.location, query.device, query.category, window, query.k)
            as_of = reader.now_ms
        segment = Segment(query.location or "*", query.device or "*", query.category or "*")
        return RankedItems(
            items=items, segment=segment, window_s=window, as_of_ms=as_of, lag=self.lag()
        )

    def related(self, item_id: str, query: RelatedQuery) -> RelatedItems:
        """Items most often viewed, carted or bought in the same sessions as ``item_id``."""
        check_related(query, self.config.stream)
        with self.source.reading() as reader:
            items = reader.related(item_id, query.kind, query.k)
            as_of = reader.now_ms
        return RelatedItems(
            item_id=item_id, kind=query.kind, items=items, as_of_ms=as_of, lag=self.lag()
        )

    def bots(self, query: BotsQuery) -> Bots:
        """The visitors flagged now and the filter's counts."""
        records = self.source.bot_verdicts(query.limit)
        stats = self.source.bot_stats()
        by_reason = {key[len(_REASON) :]: n for key, n in stats.items() if key.startswith(_REASON)}
        counts = BotCounts(
            checked=stats.get("checked", 0), flagged=stats.get("flagged", 0), by_reason=by_reason
        )
        return Bots(enabled=self.bots_enabled, bots=records, counts=counts)


class StreamRunner(_Queries):
    """A ``StreamProcessor`` over the service's logs, run in a background thread."""

    def __init__(
        self,
        config: Config,
        events_log: EventLog,
        catalog_log: EventLog,
        *,
        batch_log: EventLog | None = None,
        write_snapshots: bool = True,
    ) -> None:
        self.config = config
        self.bots_enabled = config.bots.enabled
        factory = default_bot_filter_factory(config) if self.bots_enabled else None
        self.processor = StreamProcessor(
            config, events_log, catalog_log, factory, batch_log=batch_log,
            write_snapshots=write_snapshots,
        )  # fmt: skip
        self.source: StateSource = self.processor
        self.resumed_from = self.processor.offsets()
        self.failure: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hotshelf-stream", daemon=True)

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start processing in the background; it catches up from the snapshot's offsets."""
        _logger.info("stream.started", resumed_from=self.resumed_from,
                     lag=self.processor.lag(), bot_filter=self.bots_enabled)  # fmt: skip
        self._thread.start()

    def _run(self) -> None:
        try:
            self._catch_up()
            self.processor.run(self._stop)
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            _logger.exception("stream.failed")

    def _catch_up(self) -> None:
        """Catch up on the logs, and freeze what that built out of the cyclic GC, as the
        server's start-up does with what it loaded (``HotshelfApp.startup``; see
        ``StreamProcessor.catch_up_and_freeze``)."""
        started = time.monotonic()
        applied = self.processor.catch_up_and_freeze(self._stop)
        _logger.info("stream.caught_up", records=applied, frozen_objects=gc.get_freeze_count(),
                     seconds=round(time.monotonic() - started, 3))  # fmt: skip

    @property
    def running(self) -> bool:
        """Whether the processing thread is alive and has not failed."""
        return self._thread.is_alive() and self.failure is None

    def close(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop the thread (its last act is a snapshot) and release the consumers.

        Never snapshots here: after a failure the state may be half-way through a batch,
        and the snapshot before it is the one a restart should resume from.
        """
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._thread.is_alive():
            _logger.error("stream.stop_timeout", seconds=timeout_s)
            return  # still using the consumers: leave them to the process's exit
        self.processor.close(snapshot=False)
        _logger.info("stream.stopped", offsets=self.processor.offsets())

    def lag(self) -> dict[str, int]:
        """Records per topic the state does not reflect yet."""
        return self.processor.lag()


class RemoteReader(_Queries):
    """The partitions' merged snapshots from Redis (``RemoteState``); no processor here."""

    def __init__(self, config: Config, logs: dict[str, EventLog]) -> None:
        from hotshelf.stream import RemoteState

        self.config = config
        self.bots_enabled = config.bots.enabled
        self.remote = RemoteState(config, logs=logs)
        self.source = self.remote
        self.failure: str | None = None
        self._closed = False

    def start(self) -> None:
        """Nothing runs here: the partitions are their own processes."""
        _logger.info("stream.remote", partitions=self.config.stream.partitions)

    @property
    def running(self) -> bool:
        return not self._closed

    def close(self) -> None:
        self._closed = True
        self.remote.close()

    def lag(self) -> dict[str, int]:
        """Records per partition and topic not in the partitions' snapshots yet."""
        return {
            f"{part}/{topic}": n
            for part, topics in self.remote.lag().items()
            for topic, n in topics.items()
        }


def open_stream(
    config: Config,
    events_log: EventLog,
    catalog_log: EventLog,
    batch_log: EventLog,
    *,
    write_snapshots: bool = True,
) -> StreamRunner | RemoteReader:
    """The stream state over these logs, not started: a processor here
    (``stream.partitions = 1``), else the partitions' snapshots."""
    if config.stream.partitions > 1:  # processors run apart: read their snapshots
        logs = {"events": events_log, "catalog": catalog_log, "events.batch": batch_log}
        return RemoteReader(config, logs)
    return StreamRunner(
        config, events_log, catalog_log, batch_log=batch_log, write_snapshots=write_snapshots
    )
