"""Events and catalog items: the data model, validation and de-duplication."""

from hotshelf.events._dedup import DedupWindow
from hotshelf.events._model import (
    Availability,
    CatalogChange,
    CatalogOp,
    Event,
    EventType,
    Id,
    Item,
    StoredEvent,
    decode_catalog_change,
    decode_stored_event,
    encode_catalog_change,
    encode_stored_event,
)
from hotshelf.events._normalize import IpHasher, normalize
from hotshelf.events._validation import check_events, decode_events, media_kind

__all__ = [
    "Availability",
    "CatalogChange",
    "CatalogOp",
    "DedupWindow",
    "Event",
    "EventType",
    "Id",
    "IpHasher",
    "Item",
    "StoredEvent",
    "check_events",
    "decode_catalog_change",
    "decode_events",
    "decode_stored_event",
    "encode_catalog_change",
    "encode_stored_event",
    "media_kind",
    "normalize",
]
