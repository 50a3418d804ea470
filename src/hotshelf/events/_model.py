"""The clickstream and catalog data model.

Two shapes per concept: what clients send (``Event``, ``Item``: lenient about optional
fields, strict about types) and what the log stores (``StoredEvent``,
``CatalogChange``: normalised, with the IP already hashed and the time in epoch ms).
Stored records are msgpack; the encoders/decoders here are the only place that knows
the byte format, so every consumer of the log goes through them.

Events are created by the hundred thousand per second and never form reference
cycles (decoded JSON cannot), so their structs opt out of the cyclic GC (``gc=False``):
that keeps collections short on the ingest hot path.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

import msgspec

__all__ = [
    "Availability",
    "CatalogChange",
    "CatalogOp",
    "Event",
    "EventType",
    "Item",
    "StoredEvent",
    "decode_catalog_change",
    "decode_stored_event",
    "encode_catalog_change",
    "encode_stored_event",
]

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
ShortText = Annotated[str, msgspec.Meta(max_length=256)]
QueryText = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
# Epoch seconds (int or float) or an RFC 3339 timestamp with a timezone.
Timestamp = datetime | float


class EventType(enum.StrEnum):
    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    PURCHASE = "purchase"
    IMPRESSION = "impression"
    SEARCH = "search"


# Types whose meaning depends on one item.
ITEM_TYPES = frozenset({EventType.VIEW, EventType.CLICK, EventType.ADD_TO_CART})


class Event(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, gc=False):
    """One clickstream event as a client sends it (JSON)."""

    type: EventType
    event_id: Id | None = None
    timestamp: Timestamp | None = None
    user_id: Id | None = None
    cookie_id: Id | None = None
    session_id: Id | None = None
    item_id: Id | None = None
    item_ids: Annotated[list[Id], msgspec.Meta(max_length=1000)] | None = None
    query: QueryText | None = None
    location: ShortText | None = None
    device: ShortText | None = None
    user_agent: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    ip: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    properties: dict[str, Any] | None = None


class StoredEvent(msgspec.Struct, kw_only=True, omit_defaults=True, array_like=True, gc=False):
    """An accepted event as the log stores it.

    ``ts_ms`` is the client's event time, ``received_ms`` when hotshelf accepted it;
    ``ip_hash`` replaces the raw IP (keyed BLAKE2b, hex). ``lane`` is ``"rt"`` for live
    traffic and ``"batch"`` for bulk imports.
    """

    event_id: str
    type: EventType
    ts_ms: int
    received_ms: int
    cookie_id: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    item_id: str | None = None
    item_ids: list[str] | None = None
    query: str | None = None
    location: str | None = None
    device: str | None = None
    user_agent: str | None = None
    ip_hash: str | None = None
    properties: dict[str, Any] | None = None
    lane: str = "rt"


class Availability(enum.StrEnum):
    IN_STOCK = "in_stock"
    OUT_OF_STOCK = "out_of_stock"
    PREORDER = "preorder"
    DISCONTINUED = "discontinued"


Price = Annotated[float, msgspec.Meta(ge=0, le=1e9)]


class Item(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A catalog item. ``category`` is a path, most general first (["Home", "Kitchen"])."""

    item_id: Id
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    description: Annotated[str, msgspec.Meta(max_length=16_384)] = ""
    category: Annotated[list[ShortText], msgspec.Meta(max_length=8)] = msgspec.field(
        default_factory=list
    )
    price: Price | None = None
    availability: Availability = Availability.IN_STOCK
    image: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    attributes: dict[str, Any] | None = None


class CatalogOp(enum.StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"


class CatalogChange(msgspec.Struct, kw_only=True, omit_defaults=True, array_like=True):
    """One change to the catalog as the log stores it."""

    op: CatalogOp
    item_id: str
    received_ms: int
    item: Item | None = None


_stored_event_encoder = msgspec.msgpack.Encoder()
_stored_event_decoder = msgspec.msgpack.Decoder(StoredEvent)
_catalog_decoder = msgspec.msgpack.Decoder(CatalogChange)


def encode_stored_event(event: StoredEvent) -> bytes:
    return _stored_event_encoder.encode(event)


def decode_stored_event(data: bytes) -> StoredEvent:
    return _stored_event_decoder.decode(data)


def encode_catalog_change(change: CatalogChange) -> bytes:
    return _stored_event_encoder.encode(change)


def decode_catalog_change(data: bytes) -> CatalogChange:
    return _catalog_decoder.decode(data)
