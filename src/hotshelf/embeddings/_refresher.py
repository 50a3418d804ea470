"""``LocalRefresher``: applies remote answers to the local tier on a thread of its own.

A remote answer that completes while a request waits for it must not keep that request
waiting while the local tier takes it in: under the GIL, an I/O thread that refreshed
right after handing over the answer would hold the request's thread back for the whole
refresh. So the I/O thread only queues the answer, and this thread, once woken, first
waits ``delay_s`` (0.2 ms: the request that waited for the answer returns meanwhile)
and then applies everything queued by then in one go. The queue is bounded: past
``max_backlog`` waiting answers, new ones are dropped and counted (a refresh only
saves a later remote wait; the next read of those keys brings them again).

Writes. Every local write goes through here too (``put_many``, ``delete_many``), under
one lock, and bumps a generation. A read notes the generation when it is issued; its
answer is applied only if no write went through since, because it may predate that
write and would bring back the old vector.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence

import numpy.typing as npt
import structlog

from hotshelf.embeddings._local_tier import LocalTier
from hotshelf.embeddings._tier import FoundMask, Vectors

__all__ = ["LocalRefresher"]

_logger = structlog.get_logger("hotshelf.embeddings")
_Refresh = tuple[list[str], int, Vectors, FoundMask]


class LocalRefresher:
    """The only writer of ``local`` once a store owns it (see the module docstring)."""

    def __init__(
        self, local: LocalTier, *, max_backlog: int = 1024, delay_s: float = 0.0002
    ) -> None:
        self.local = local
        self._max_backlog = max_backlog
        self._delay_s = delay_s
        self._write_lock = threading.Lock()
        self._generation = 0
        self._count_lock = threading.Lock()
        self._backlog = 0
        self.dropped = 0
        self._queue: queue.SimpleQueue[_Refresh | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, name="hotshelf-embeddings-refresh", daemon=True
        )
        self._thread.start()

    @property
    def generation(self) -> int:
        """Writes so far: a read notes it when issued, and hands it back with its answer."""
        return self._generation

    @property
    def backlog(self) -> int:
        """Answers queued and not applied yet."""
        return self._backlog

    def offer(self, keys: list[str], generation: int, vectors: Vectors, found: FoundMask) -> None:
        """Queue a remote answer for ``keys``, read at ``generation``; dropped when full."""
        with self._count_lock:
            if self._backlog >= self._max_backlog:
                self.dropped += 1
                return
            self._backlog += 1
        self._queue.put((keys, generation, vectors, found))

    def put_many(self, keys: Sequence[str], vectors: npt.ArrayLike) -> None:
        with self._write_lock:
            self._generation += 1
            self.local.put_many(keys, vectors)

    def delete_many(self, keys: Sequence[str]) -> None:
        with self._write_lock:
            self._generation += 1
            self.local.delete_many(keys)

    def close(self) -> None:
        """Apply what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        running = True
        while running:
            batch = [self._queue.get()]
            time.sleep(self._delay_s)
            while not self._queue.empty():
                batch.append(self._queue.get())
            running = batch[-1] is not None
            answers = [item for item in batch if item is not None]
            try:
                self._apply(answers)
            finally:
                with self._count_lock:
                    self._backlog -= len(answers)

    def _apply(self, answers: list[_Refresh]) -> None:
        with self._write_lock:
            for keys, generation, vectors, found in answers:
                if generation != self._generation:
                    continue
                try:
                    self.local.refresh(keys, vectors, found)
                except Exception:  # one bad answer must not stop the refreshes
                    _logger.exception("embeddings.refresh_failed", keys=len(keys))
