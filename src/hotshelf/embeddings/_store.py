"""``TwoTierStore``: a local hot tier in front of a remote tier, doing constant work.

A cache that saves remote reads makes a system bimodal: at a high hit ratio the remote
sees little load, and the day the cache empties (a deploy, a new catalog) the full
load arrives at once, at the worst moment. So this store does the same remote work
whatever the hit ratio (the lesson of DynamoDB's request routers):

* **Every** request with at least one key makes exactly one remote ``get_many`` of all
  its keys, right after its local lookup.
* On a full local hit the request returns at once and its remote read runs off the
  critical path, on one of ``max_in_flight`` I/O threads (handed over on a queue: a
  ``ThreadPoolExecutor`` future and its callback cost a paced full hit ~25 µs, a third
  of the whole request). On any local miss the remote answer
  is the result, read up to ``remote_deadline_ms``: ``get_many`` reads on the calling
  thread (a hand-off to a pool thread and back costs more than the read itself under
  the GIL), so the deadline is the remote tier's read timeout (``open_store`` sets
  Redis's to it); ``aget_many`` must not block the event loop, so it hands the read to
  the pool and awaits it for at most the deadline.
* Every remote answer refreshes the local tier (on a thread of its own, ``_refresher``):
  stored keys are overwritten, new ones are offered to its admission policy, keys the
  remote no longer has are dropped. The remote is the source of truth; the local tier
  serves full hits and outages.

Degraded mode. A remote that errors, times out or is stopped never reaches a client:
the request is answered from the local tier (keys in neither are not found),
``Fetch.degraded`` is set and ``degraded_requests`` counts it. In-flight remote reads
are bounded by ``max_in_flight``: with every slot busy (a stalled remote) a request
issues no read at all and is degraded too, so requests never queue behind a dead
server. Recovery needs nothing: the next read that succeeds (and the next request that
finds a free slot) clears the ``degraded`` gauge. Empty requests do no work and are not
counted.

Writes go through: ``put_many`` writes the remote first (its errors reach the caller:
nothing is stored locally that the remote lacks), then the local tier. A read in flight
across a write could bring back the value from before it, so its refresh is dropped
(the next read of those keys refreshes them).
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import structlog

from hotshelf._closing import Closeable
from hotshelf.embeddings._local_tier import LocalTier
from hotshelf.embeddings._refresher import LocalRefresher
from hotshelf.embeddings._store_metrics import COUNTERS, StoreCollector
from hotshelf.embeddings._tier import (
    EmbeddingTier,
    FoundMask,
    Vectors,
    check_keys,
    check_vectors,
    empty_result,
)
from hotshelf.errors import ConfigError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["Fetch", "TwoTierStore"]

_logger = structlog.get_logger("hotshelf.embeddings")
_Answer = tuple[Vectors, FoundMask]
# An I/O thread's job: keys, the refresher generation when issued, the local answer
# (a full hit) or None, and the future a waiting request holds (None: nobody waits).
_Job = tuple[list[str], int, Vectors | None, Future[_Answer] | None]


@functools.lru_cache(maxsize=256)
def _full_hit_masks(n: int) -> tuple[FoundMask, FoundMask]:
    """All-true and all-false masks of ``n``, read-only and shared: a full local hit
    answers with them instead of allocating two arrays (each ~5 µs on a CPU that just
    woke from idle, a tenth of the whole hit)."""
    every, none = np.ones(n, np.bool_), np.zeros(n, np.bool_)
    every.flags.writeable = none.flags.writeable = False
    return every, none


@dataclass(frozen=True, slots=True)
class Fetch:
    """The answer to one read; arrays are ``(n, dim)`` / ``(n,)`` in request order.

    ``vectors`` holds zeros where a key was not found and may be read-only; so may
    the masks (a full local hit's are shared). ``from_local`` / ``from_remote`` say
    which tier answered each found key.
    ``degraded`` is set when the answer came from the local tier alone although the
    remote was needed (a local miss) or could not even be asked (every slot busy).
    """

    vectors: Vectors
    found: FoundMask
    from_local: FoundMask
    from_remote: FoundMask
    degraded: bool


class TwoTierStore(Closeable):
    """``local`` in front of ``remote``, one remote read per request (see module doc).

    The store owns both tiers: ``close()`` closes them.
    """

    def __init__(
        self,
        local: LocalTier,
        remote: EmbeddingTier,
        *,
        remote_deadline_ms: float = 10.0,
        max_in_flight: int = 8,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if local.dim != remote.dim:
            raise ConfigError(f"local tier dim {local.dim} != remote tier dim {remote.dim}")
        if max_in_flight < 1 or remote_deadline_ms <= 0:
            raise ConfigError("max_in_flight and remote_deadline_ms must be positive")
        self.local = local
        self.remote = remote
        self._deadline_s = remote_deadline_ms / 1000
        self._max_in_flight = max_in_flight
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._readers = [
            threading.Thread(target=self._serve, name=f"hotshelf-embeddings-{i}", daemon=True)
            for i in range(max_in_flight)
        ]
        self._refresher = LocalRefresher(local)
        self._lock = threading.Lock()  # counters, in-flight slots, health, closed
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._in_flight = 0
        self._remote_ok = True  # the last remote read succeeded
        self._saturated = False  # the last request found every slot busy
        self._closed = False
        for reader in self._readers:
            reader.start()
        if registry is not None:
            registry.register(StoreCollector(self.stats))

    @property
    def dim(self) -> int:
        return self.local.dim

    # -- reading ---------------------------------------------------------------

    def get_many(self, keys: Sequence[str]) -> Fetch:
        """Vectors of ``keys``; never raises for a remote failure (see ``Fetch.degraded``)."""
        keys, answer, hits = self._local_first(keys)
        return answer if answer is not None else self._read_here(keys, hits)

    def _local_first(self, keys: Sequence[str]) -> tuple[list[str], Fetch | None, int]:
        """The keys as a list; the answer when it needs no remote wait (no keys, or a full
        local hit, its remote read issued), else None; and how many keys are local."""
        keys = list(keys)
        if not keys:
            return keys, self._empty(), 0
        vectors, hits = self.local.get_all(keys)
        return keys, None if vectors is None else self._full_hit(keys, vectors), hits

    def _read_here(self, keys: list[str], hits: int) -> Fetch:
        """A local miss: this thread makes the request's remote read, in a slot; the
        local tier's rows are gathered only if the remote cannot answer."""
        generation = self._refresher.generation
        if not self._take_slot():
            return self._degraded(keys)
        started = time.perf_counter()
        try:
            answer = self.remote.get_many(keys)
        except Exception as exc:  # noqa: BLE001 - a remote failure never reaches a client
            self._note_outcome(exc)
            late = time.perf_counter() - started >= self._deadline_s
            return self._degraded(keys, late=late)
        finally:
            self._release_slot()
        self._note_outcome(None)
        self._refresher.offer(keys, generation, *answer)
        return self._remote_answer(len(keys), hits, answer)

    def get_many_nowait(self, keys: Sequence[str]) -> Fetch:
        """What the local tier holds of ``keys``, at once, for a caller that must not wait
        on the network (a recommendation computed on the event loop). The request's
        remote read is still issued (constant work), on an I/O thread even on a local
        miss, and its answer refreshes the local tier: a key missing now is there for a
        later request. ``degraded`` is set only when no read could be issued."""
        keys, answer, _ = self._local_first(keys)
        if answer is not None:
            return answer
        issued = self._issue(keys, None)
        vectors, found = self.local.get_many(keys, record=False)
        return self._local_answer(vectors, found, degraded=not issued)

    async def aget_many(self, keys: Sequence[str]) -> Fetch:
        """``get_many`` for the event loop: the wait for the remote is awaited, never blocked."""
        keys, answer, hits = self._local_first(keys)
        if answer is not None:
            return answer
        future: Future[_Answer] = Future()
        if not self._issue(keys, future):
            return self._degraded(keys)
        waiter = asyncio.wrap_future(future)
        # A read that ends after the deadline must not leave an unretrieved exception.
        waiter.add_done_callback(_retrieve)
        done, _ = await asyncio.wait((waiter,), timeout=self._deadline_s)
        if not done or waiter.exception() is not None:
            return self._degraded(keys, late=not done)
        return self._remote_answer(len(keys), hits, waiter.result())

    def _empty(self) -> Fetch:
        vectors, found = empty_result(0, self.dim)
        return Fetch(vectors, found, found, found, degraded=False)

    def _local_answer(
        self, vectors: Vectors, found: FoundMask, *, degraded: bool, late: bool = False
    ) -> Fetch:
        """The local tier's answer: a full hit whose remote read was issued, or degraded."""
        hits = int(found.sum())
        with self._lock:
            counts = self._counts
            counts["requests"] += 1
            counts["keys"] += len(found)
            counts["local_hits"] += hits
            counts["full_local_hits"] += hits == len(found)
            counts["degraded_requests"] += degraded
            counts["deadline_misses"] += late
        return Fetch(vectors, found, found, np.zeros(len(found), np.bool_), degraded=degraded)

    def _degraded(self, keys: list[str], *, late: bool = False) -> Fetch:
        """A miss the remote could not answer: what the local tier has (read recorded)."""
        vectors, found = self.local.get_many(keys, record=False)
        return self._local_answer(vectors, found, degraded=True, late=late)

    def _full_hit(self, keys: list[str], vectors: Vectors) -> Fetch:
        """Every key was local: answered at once, its remote read handed to an I/O thread
        (``degraded`` if no slot was free for it). One lock for the slot and the counts."""
        n = len(keys)
        generation = self._refresher.generation
        with self._lock:
            issued = self._issue_locked((keys, generation, vectors, None))
            counts = self._counts
            counts["requests"] += 1
            counts["keys"] += n
            counts["local_hits"] += n
            counts["full_local_hits"] += 1
            counts["degraded_requests"] += not issued
        found, no_remote = _full_hit_masks(n)
        return Fetch(vectors, found, found, no_remote, degraded=not issued)

    def _remote_answer(self, n: int, hits: int, answer: _Answer) -> Fetch:
        """The remote's answer to a request that had ``hits`` of its ``n`` keys locally."""
        remote_vectors, remote_found = answer
        with self._lock:
            counts = self._counts
            counts["requests"] += 1
            counts["keys"] += n
            counts["local_hits"] += hits
        no_local = np.zeros(n, np.bool_)
        return Fetch(remote_vectors, remote_found, no_local, remote_found, degraded=False)

    # -- the remote read every request makes -------------------------------------

    def _take_slot(self) -> bool:
        """Count a remote read in flight; False (and counted as skipped) when every slot
        is busy or the store is closed."""
        with self._lock:
            return self._take_slot_locked()

    def _take_slot_locked(self) -> bool:
        self._saturated = self._in_flight >= self._max_in_flight
        if self._saturated or self._closed:
            self._counts["remote_skipped"] += 1
            return False
        self._in_flight += 1
        self._counts["remote_reads"] += 1
        return True

    def _release_slot(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _issue(self, keys: list[str], future: Future[_Answer] | None) -> bool:
        """Hand a local miss's remote read to an I/O thread, ``future`` (if any) to be told
        the answer; False when no slot is free."""
        generation = self._refresher.generation
        with self._lock:
            return self._issue_locked((keys, generation, None, future))

    def _issue_locked(self, job: _Job) -> bool:
        """Take a slot and queue ``job`` for an I/O thread; False when no slot is free.
        Under the store's lock: ``close()`` queues its stops after every issued job."""
        if not self._take_slot_locked():
            return False
        self._jobs.put(job)
        return True

    def _serve(self) -> None:
        """An I/O thread: one remote read at a time, each in the slot its request took."""
        while (job := self._jobs.get()) is not None:
            keys, generation, local, future = job
            try:
                # a request cancelled while its read waited here no longer wants it
                if future is None or future.set_running_or_notify_cancel():
                    self._read_for(keys, generation, local, future)
            finally:
                self._release_slot()

    def _read_for(
        self,
        keys: list[str],
        generation: int,
        local: Vectors | None,
        future: Future[_Answer] | None,
    ) -> None:
        """The read, its outcome handed to the waiting request (if any) first, then the
        refresh. The usual answer to a full hit equals what the local tier gave: then
        there is nothing to refresh and the refresher is not woken (unless reads wait to
        be counted)."""
        try:
            vectors, found = self.remote.get_many(keys)
        except Exception as exc:  # noqa: BLE001 - a remote failure never reaches a client
            self._note_outcome(exc)
            if future is not None:
                future.set_exception(exc)
            return
        self._note_outcome(None)
        if future is not None:
            future.set_result((vectors, found))
        same = local is not None and bool(found.all()) and np.array_equal(vectors, local)
        if not same or self.local.reads_waiting():
            self._refresher.offer(keys, generation, vectors, found)

    def _note_outcome(self, error: BaseException | None) -> None:
        with self._lock:
            was_ok, self._remote_ok = self._remote_ok, error is None
            self._counts["remote_errors"] += error is not None
        if error is not None and was_ok:
            kind = type(error).__name__
            _logger.warning("embeddings.remote_failing", error=str(error), kind=kind)
        elif error is None and not was_ok:
            _logger.info("embeddings.remote_recovered")

    # -- writing ---------------------------------------------------------------

    def put_many(self, keys: Sequence[str], vectors: npt.ArrayLike) -> None:
        """Write through: the remote tier first (its errors propagate), then the local one."""
        keys = check_keys(keys)
        matrix = check_vectors(keys, vectors, self.dim)
        self.remote.put_many(keys, matrix)
        self._refresher.put_many(keys, matrix)

    def delete_many(self, keys: Sequence[str]) -> None:
        """Delete from the remote tier (its errors propagate), then the local one."""
        keys = list(keys)
        self.remote.delete_many(keys)
        self._refresher.delete_many(keys)

    def load_many(self, keys: Sequence[str]) -> tuple[Vectors, FoundMask]:
        """A bulk read straight from the remote tier, for jobs (an index rebuilt at
        start-up): remote errors propagate, and the local tier is neither read nor
        filled, so a bulk scan cannot flush the hot items out of it."""
        return self.remote.get_many(list(keys))

    # -- state -----------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """The counters and gauges of ``_store_metrics`` by their short names."""
        with self._lock:
            stats = dict(self._counts)
            stats["in_flight"] = self._in_flight
            stats["degraded"] = int(self._saturated or not self._remote_ok)
        stats["refresh_backlog"] = self._refresher.backlog
        stats["refreshes_dropped"] = self._refresher.dropped
        stats["local_keys"] = len(self.local)
        stats["local_evictions"] = self.local.evictions
        stats["local_rejections"] = self.local.rejections
        return stats

    def close(self) -> None:
        """Wait for in-flight remote reads and their refreshes, then close both tiers."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._readers:  # after every job issued before this lock
                self._jobs.put(None)
        for reader in self._readers:
            reader.join()
        self._refresher.close()
        self.local.close()
        self.remote.close()


def _retrieve(waiter: asyncio.Future[_Answer]) -> None:
    if not waiter.cancelled():
        waiter.exception()
