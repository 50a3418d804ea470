"""normalize: ids, times, and the raw IP never reaching a stored record."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from hotshelf.config import EventsConfig
from hotshelf.events import (
    Event,
    EventType,
    IpHasher,
    decode_stored_event,
    encode_stored_event,
    normalize,
)
from hotshelf.events._normalize import new_event_ids

CFG = EventsConfig()
NOW = 1_700_000_000_000


def view(**fields: object) -> Event:
    return Event(type=EventType.VIEW, user_id="u", item_id="i", **fields)  # type: ignore[arg-type]


def test_ids_are_kept_or_assigned_unique() -> None:
    stored = normalize([view(event_id="mine"), view(), view()], NOW, CFG)
    assert stored[0].event_id == "mine"
    assigned = {s.event_id for s in stored[1:]}
    assert len(assigned) == 2
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in assigned)


def test_new_event_ids() -> None:
    ids = new_event_ids(1000)
    assert len(set(ids)) == 1000
    assert new_event_ids(0) == []


def test_times() -> None:
    dt = datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    stored = normalize([view(), view(timestamp=1_700_000_001.5), view(timestamp=dt)], NOW, CFG)
    assert [s.ts_ms for s in stored] == [NOW, 1_700_000_001_500, round(dt.timestamp() * 1000)]
    assert {s.received_ms for s in stored} == {NOW}
    assert {s.lane for s in stored} == {"rt"}
    assert normalize([view()], NOW, CFG, lane="batch")[0].lane == "batch"


def test_fields_are_carried() -> None:
    event = Event(
        type=EventType.IMPRESSION, event_id="e", cookie_id="c", session_id="s",
        item_ids=["a", "b"], location="home", device="mobile", user_agent="ua",
        properties={"k": [1, "v"]},
    )  # fmt: skip
    [stored] = normalize([event], NOW, CFG)
    assert decode_stored_event(encode_stored_event(stored)) == stored
    assert (stored.cookie_id, stored.session_id, stored.item_ids) == ("c", "s", ["a", "b"])
    assert (stored.location, stored.device, stored.user_agent) == ("home", "mobile", "ua")
    assert stored.properties == {"k": [1, "v"]}


def test_ip_is_hashed_with_the_salt() -> None:
    [a] = normalize([view(ip="203.0.113.7")], NOW, CFG)
    [b] = normalize([view(ip="203.0.113.7")], NOW, EventsConfig(ip_hash_salt="other"))
    expected = hashlib.blake2b(b"203.0.113.7", key=b"hotshelf", digest_size=16).hexdigest()
    assert a.ip_hash == expected
    assert b.ip_hash != a.ip_hash
    assert normalize([view()], NOW, CFG)[0].ip_hash is None


def test_long_salt_is_accepted() -> None:
    hasher = IpHasher("s" * 500)
    assert len(hasher("10.0.0.1")) == 32
    assert hasher("10.0.0.1") == IpHasher("s" * 500)("10.0.0.1")


def test_hasher_cache_is_bounded() -> None:
    hasher = IpHasher("salt", cache_size=10)
    first = hasher("10.0.0.0")
    for i in range(100):
        hasher(f"10.0.0.{i}")
    assert len(hasher._cache) <= 10
    assert hasher("10.0.0.0") == first


@given(st.ip_addresses().map(str))
def test_raw_ip_never_stored(ip: str) -> None:
    [stored] = normalize([view(ip=ip)], NOW, CFG)
    assert stored.ip_hash is not None
    assert ip.encode() not in encode_stored_event(stored)
