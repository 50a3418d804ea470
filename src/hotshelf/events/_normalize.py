"""Turning validated client events into the records the log stores.

Normalisation gives every event an id, an epoch-ms time and replaces the raw IP with
a keyed BLAKE2b hash: the raw address never reaches the log.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from datetime import datetime

from hotshelf.config import EventsConfig
from hotshelf.events._model import Event, StoredEvent

__all__ = ["IpHasher", "new_event_ids", "normalize"]

_ID_BYTES = 16


class IpHasher:
    """Keyed BLAKE2b of IP addresses (hex), with a small cache: clients repeat IPs."""

    def __init__(self, salt: str, *, cache_size: int = 65_536) -> None:
        key = salt.encode()
        if len(key) > hashlib.blake2b.MAX_KEY_SIZE:
            key = hashlib.blake2b(key).digest()
        self._base = hashlib.blake2b(key=key, digest_size=16)
        self._cache: dict[str, str] = {}
        self._cache_size = cache_size

    def __call__(self, ip: str) -> str:
        digest = self._cache.get(ip)
        if digest is None:
            h = self._base.copy()
            h.update(ip.encode())
            digest = h.hexdigest()
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[ip] = digest
        return digest


@functools.cache
def _hasher(salt: str) -> IpHasher:
    return IpHasher(salt)


def new_event_ids(count: int) -> list[str]:
    """``count`` random 128-bit ids as hex; one ``urandom`` call for the whole batch."""
    raw = os.urandom(_ID_BYTES * count).hex()
    step = 2 * _ID_BYTES
    return [raw[i : i + step] for i in range(0, len(raw), step)]


def normalize(
    events: Sequence[Event], now_ms: int, cfg: EventsConfig, *, lane: str = "rt"
) -> list[StoredEvent]:
    """Stored records for validated events received at ``now_ms`` (epoch ms)."""
    hash_ip = _hasher(cfg.ip_hash_salt)
    missing = sum(1 for e in events if e.event_id is None)
    fresh_ids = iter(new_event_ids(missing)) if missing else iter(())
    out: list[StoredEvent] = []
    append = out.append
    for e in events:
        ts = e.timestamp
        if ts is None:
            ts_ms = now_ms
        elif isinstance(ts, datetime):
            ts_ms = round(ts.timestamp() * 1000)
        else:
            ts_ms = round(ts * 1000)
        ip = e.ip
        append(
            StoredEvent(
                event_id=e.event_id or next(fresh_ids),
                type=e.type,
                ts_ms=ts_ms,
                received_ms=now_ms,
                cookie_id=e.cookie_id,
                user_id=e.user_id,
                session_id=e.session_id,
                item_id=e.item_id,
                item_ids=e.item_ids,
                query=e.query,
                location=e.location,
                device=e.device,
                user_agent=e.user_agent,
                ip_hash=None if ip is None else hash_ip(ip),
                properties=e.properties,
                lane=lane,
            )
        )
    return out
