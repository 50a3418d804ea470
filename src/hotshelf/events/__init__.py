"""Events and catalog items: the data model, validation and de-duplication."""

from hotshelf.events._model import (
    Availability,
    CatalogChange,
    CatalogOp,
    Event,
    EventType,
    Item,
    StoredEvent,
    decode_catalog_change,
    decode_stored_event,
    encode_catalog_change,
    encode_stored_event,
)

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
