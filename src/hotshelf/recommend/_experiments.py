"""Experiment arms by a stable hash of the visitor, and the impression each served list
is logged as.

A visitor's arm is a pure function of the configured salt, the visitor key and the arms'
weights: BLAKE2b, never Python's ``hash`` (which is salted per process), so every
worker, restart and replay puts the same visitor in the same arm. Adding an arm or
changing a weight moves only the visitors whose point on [0, 1) falls in a moved
boundary's stretch; changing ``salt`` reshuffles everyone.

The impression event is how a served list reaches attribution: the serving side
appends it to the events log like any ingested event, and ``Attribution`` reads it back
from there, so the numbers survive restarts and replay the same way.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import os
import time

from hotshelf.config import ExperimentsConfig, VariantConfig
from hotshelf.errors import FieldProblem, ValidationError
from hotshelf.events import EventType, StoredEvent
from hotshelf.recommend._context import Recommendations, RecommendRequest

__all__ = ["VariantAssigner", "impression_event", "new_impression_id"]

_DIGEST_BYTES = 8  # 64 bits: shares exact to ~1e-19, far below any sampling noise


def _hash_key(salt: str) -> bytes:
    """The salt as a BLAKE2b key (hashed down when longer than a key may be)."""
    key = salt.encode()
    if len(key) > hashlib.blake2b.MAX_KEY_SIZE:
        key = hashlib.blake2b(key).digest()
    return key


class VariantAssigner:
    """Puts each visitor in one experiment arm, in proportion to the arms' weights."""

    def __init__(self, config: ExperimentsConfig) -> None:
        self.variants = list(config.variants)
        self._by_name = {v.name: v for v in self.variants}
        total = sum(v.weight for v in self.variants)
        # Upper bounds of each arm's stretch of [0, 1); the last is 1 exactly so that
        # rounding in the sum can never leave a point past every arm.
        bounds = [w / total for w in itertools.accumulate(v.weight for v in self.variants)]
        self._bounds = [*bounds[:-1], 1.0]
        self._base = hashlib.blake2b(key=_hash_key(config.salt), digest_size=_DIGEST_BYTES)

    def point(self, visitor_key: str) -> float:
        """The visitor's fixed point on [0, 1): the keyed hash of its key, as a fraction."""
        h = self._base.copy()
        h.update(visitor_key.encode())
        return int.from_bytes(h.digest(), "big") / float(1 << (8 * _DIGEST_BYTES))

    def assign(self, visitor_key: str) -> VariantConfig:
        """The arm of the visitor with this key (the request's ``cookie_id``)."""
        index = bisect.bisect_right(self._bounds, self.point(visitor_key))
        return self.variants[min(index, len(self.variants) - 1)]

    def named(self, name: str) -> VariantConfig:
        """The arm called ``name`` (an explicit override); ``ValidationError`` if none is."""
        variant = self._by_name.get(name)
        if variant is None:
            known = ", ".join(repr(v.name) for v in self.variants)
            problem = FieldProblem("variant", f"unknown variant {name!r}; known: {known}")
            raise ValidationError("unknown experiment variant", [problem])
        return variant

    def select(self, request: RecommendRequest) -> VariantConfig:
        """The request's arm: the one it names, else the one its cookie hashes to."""
        if request.variant is not None:
            return self.named(request.variant)
        return self.assign(request.cookie_id)


class _ImpressionIds:
    """Impression ids: BLAKE2b, keyed with 32 random bytes drawn once per process (and
    again in a forked child), over a counter. As unique and as unguessable as
    ``uuid4``, without its ``os.urandom`` per id: that call lets go of the GIL, and a
    request that does so mid-way waits for any busy thread of the server (the stream,
    list precomputation) to hand it back, up to the 5 ms switch interval."""

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self._key = os.urandom(32)
        self._counter = itertools.count()

    def next(self) -> str:
        n = next(self._counter).to_bytes(8, "little")
        return hashlib.blake2b(n, key=self._key, digest_size=16).hexdigest()


_impression_ids = _ImpressionIds()


def new_impression_id() -> str:
    """A fresh impression id: 128 unpredictable bits as 32 hex digits, like generated
    event ids."""
    return _impression_ids.next()


def impression_event(
    request: RecommendRequest,
    served: Recommendations,
    *,
    now_ms: int | None = None,
    user_agent: str | None = None,
    ip_hash: str | None = None,
) -> StoredEvent:
    """The ``impression`` event logging ``served`` as the answer to ``request``.

    Its ``event_id`` is the impression id (so clicks can name it); ``item_ids`` are the
    items in served order and ``properties["item_routes"]`` the route of each, parallel
    to them. An empty list is logged too: it was served, and counts against its arm.
    """
    stamp = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    items = served.items
    return StoredEvent(
        event_id=served.impression_id,
        type=EventType.IMPRESSION,
        ts_ms=stamp,
        received_ms=stamp,
        cookie_id=request.cookie_id,
        user_id=request.user_id,
        session_id=request.session_id,
        item_ids=[r.item_id for r in items],
        location=request.location,
        device=request.device,
        user_agent=user_agent,
        ip_hash=ip_hash,
        properties={
            "impression_id": served.impression_id,
            "variant": served.variant,
            "routes": [route.value for route in served.routes],
            "item_routes": [r.route.value for r in items],
            "model_version": served.model_version,
        },
    )
