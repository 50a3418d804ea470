"""``ImpressionWriter``: served lists appended to the events log in small groups.

Every answer of ``POST /v1/recommend`` is logged as an ``impression`` event, after the
answer is sent: nobody waits for it. One append per request bought nothing but
hand-offs between threads: the log writer woke to write it, the stream processor and
the attribution feed woke to read it, and the event loop woke when the append
completed. At 1,000 requests/s that is ~4,000 thread wake-ups a second under one GIL,
each a chance for the event loop to wait for the lock behind a thread that only came
to read one record.

So impressions wait on the event loop for ``delay_s`` (5 ms) after the first of a
group and are appended together: one append, one write, one wake-up of each reader
per group. The delay is not on any request's path, and a trend, an attribution or a
freshness number a few milliseconds later changes nothing a shopper sees.

Order. A click sent after its answer must follow its impression in the log (the
attribution feed credits it by the impression id it carries), so every other append
to the events log calls ``flush`` first and then starts its own append as a task:
``flush`` made the group's task before, tasks start in the order they were made, each
submits its records when it starts, and the log writer keeps submission order.

Failures are counted (``hotshelf_recommend_impressions_unlogged``) and logged; the
answers they belong to were sent already. ``drain`` submits what is waiting and waits
for every group in flight (shutdown calls it before the log closes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from hotshelf.monitoring import get_logger

if TYPE_CHECKING:
    from hotshelf.log import AppendResult, EventLog

__all__ = ["FLUSH_DELAY_S", "ImpressionWriter"]

FLUSH_DELAY_S = 0.005

_logger = get_logger("hotshelf.serving")


class ImpressionWriter:
    """Groups encoded impression events for ``log`` (a callable: the log is opened and
    closed by the service); every method runs on the event loop."""

    def __init__(
        self,
        log: Callable[[], EventLog],
        on_unlogged: Callable[[int], None],
        *,
        delay_s: float = FLUSH_DELAY_S,
    ) -> None:
        self._log = log
        self._on_unlogged = on_unlogged
        self._delay_s = delay_s
        self._waiting: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self._in_flight: set[asyncio.Future[AppendResult]] = set()

    @property
    def waiting(self) -> int:
        """Impressions not submitted to the log yet."""
        return len(self._waiting)

    def add(self, value: bytes) -> None:
        """Queue one encoded impression; the group goes ``delay_s`` after its first."""
        self._waiting.append(value)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._delay_s, self.flush)

    def flush(self) -> None:
        """Submit what is waiting now, as one append (before any other append)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._waiting:
            return
        group, self._waiting = self._waiting, []
        try:
            task = asyncio.ensure_future(self._log().append_async(group))
        except Exception as exc:  # noqa: BLE001 - the log is closing: counted, not raised
            self._unlogged(len(group), exc)
            return
        self._in_flight.add(task)
        task.add_done_callback(lambda done: self._settled(done, len(group)))

    async def drain(self) -> None:
        """Submit what is waiting, then wait until every group in flight is settled."""
        self.flush()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))

    def _settled(self, task: asyncio.Future[AppendResult], count: int) -> None:
        self._in_flight.discard(task)
        error = asyncio.CancelledError() if task.cancelled() else task.exception()
        if error is not None:
            self._unlogged(count, error)

    def _unlogged(self, count: int, error: BaseException) -> None:
        self._on_unlogged(count)
        _logger.error("recommend.impressions_not_logged", count=count, error=repr(error))
