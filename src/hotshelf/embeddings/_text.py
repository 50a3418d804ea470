"""What of an item the encoder reads, and a fingerprint that says when it changed."""

from __future__ import annotations

import hashlib

from hotshelf.events import Item

__all__ = ["item_text", "text_fingerprint"]


def item_text(item: Item, description_chars: int = 300) -> str:
    """Title, category path and the start of the description, as one passage.

    The title leads because the encoder truncates long passages; the category path
    gives short titles ("Gala") the context that tells a fruit from a festival.
    """
    parts = [item.title.strip()]
    if item.category:
        parts.append(" > ".join(item.category))
    description = item.description[:description_chars].strip()
    if description:
        parts.append(description)
    return ". ".join(parts)


def text_fingerprint(text: str) -> int:
    """64 bits of BLAKE2b: equal texts, equal fingerprints; an edit changes it."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
