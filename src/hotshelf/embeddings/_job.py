"""``EmbeddingJob``: keep the catalog's embeddings, in the store and the index, current.

The catalog log is the source of truth. The job remembers (in a manifest under
``data_dir/embeddings``) the catalog offset it has reflected, the encoder version and a
fingerprint of every item's text. A run reads the catalog records past that offset,
and re-encodes only the items whose text changed: a price or stock update costs a
fingerprint, not an inference. A new encoder version (a fine-tuned model) re-encodes
everything. With ``images`` (an ``ImageFusion``), an item's photo is part of what it
is: the fingerprint covers the photo file's path, size and modification time, and the
photo model, weight and size are part of the version.

Order makes a crash harmless: vectors go to the store and the index first and the
manifest after, atomically (write, fsync, rename). A job killed in between finds the
old manifest and encodes the same items again, to the same vectors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import msgspec
import numpy as np

from hotshelf._files import write_atomically
from hotshelf.embeddings._text import item_text, text_fingerprint
from hotshelf.events import decode_catalog_change
from hotshelf.monitoring import get_logger

if TYPE_CHECKING:
    from hotshelf.catalog import CatalogView
    from hotshelf.embeddings._images import ImageFusion, Photo
    from hotshelf.embeddings._index import VectorIndex
    from hotshelf.log import EventLog

__all__ = ["MANIFEST_NAME", "EmbeddingJob", "JobReport", "Progress"]

_logger = get_logger("hotshelf.embeddings")
MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.msgpack"  # in the job's directory
# vectors read back per request when the index is rebuilt at start-up
_LOAD_CHUNK = 1000

Progress = Callable[[int, int], None]
"""Called with (items encoded so far, items to encode) after each batch."""
_Todo = tuple[str, int, "Photo | None"]  # an item to encode: text, fingerprint, photo


class Encoder(Protocol):
    """What the job needs of a text encoder (``hotshelf.models.TextEncoder``)."""

    @property
    def version(self) -> str: ...

    def predict(self, batch: Sequence[str]) -> np.ndarray: ...


class VectorStore(Protocol):
    """What the job needs of the store (``TwoTierStore``): writes and bulk reads."""

    def put_many(self, keys: Sequence[str], vectors: np.ndarray) -> None: ...

    def delete_many(self, keys: Sequence[str]) -> None: ...

    def load_many(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]: ...


class Manifest(msgspec.Struct, kw_only=True):
    version: int = MANIFEST_VERSION
    encoder: str = ""
    offset: int = 0  # the next catalog record to reflect
    fingerprints: dict[str, int] = msgspec.field(default_factory=dict)


class JobReport(msgspec.Struct, kw_only=True):
    """What one run did."""

    encoded: int
    removed: int
    unchanged: int
    offset: int
    seconds: float
    items_per_s: float


class EmbeddingJob:
    """Encodes what changed in ``catalog`` into ``store`` and ``index``."""

    def __init__(
        self,
        catalog: CatalogView,
        catalog_log: EventLog,
        encoder: Encoder,
        store: VectorStore,
        index: VectorIndex,
        directory: Path,
        *,
        chunk: int = 1024,
        description_chars: int = 300,
        images: ImageFusion | None = None,
    ) -> None:
        self.catalog = catalog
        self.catalog_log = catalog_log
        self.encoder = encoder
        self.images = images
        self.version = encoder.version if images is None else f"{encoder.version}+{images.version}"
        self.store = store
        self.index = index
        self.chunk = chunk
        self.description_chars = description_chars
        directory.mkdir(parents=True, exist_ok=True)
        self._path = directory / MANIFEST_NAME
        self.manifest = self._read_manifest()

    @property
    def offset(self) -> int:
        """The catalog offset the embeddings reflect."""
        return self.manifest.offset

    def __len__(self) -> int:
        return len(self.manifest.fingerprints)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.manifest.fingerprints

    def _read_manifest(self) -> Manifest:
        try:
            manifest = msgspec.msgpack.decode(self._path.read_bytes(), type=Manifest)
        except FileNotFoundError:
            return Manifest()
        except msgspec.DecodeError as exc:
            _logger.warning("embeddings.manifest_unreadable", path=str(self._path), error=str(exc))
            return Manifest()
        if manifest.version != MANIFEST_VERSION:
            return Manifest()
        return manifest

    def _write_manifest(self) -> None:
        write_atomically(self._path, msgspec.msgpack.encode(self.manifest))

    # -- start-up ---------------------------------------------------------------------

    def load_index(self) -> int:
        """Fill the index from the store's vectors of the manifest's items.

        Items the store lost (a flushed Redis) drop out of the manifest, so the next
        ``run`` encodes them again. Answers how many were loaded.
        """
        keys = list(self.manifest.fingerprints)
        loaded = 0
        for start in range(0, len(keys), _LOAD_CHUNK):
            chunk = keys[start : start + _LOAD_CHUNK]
            vectors, found = self.store.load_many(chunk)
            present = [key for key, ok in zip(chunk, found, strict=True) if ok]
            self.index.upsert(present, vectors[found])
            for key, ok in zip(chunk, found, strict=True):
                if not ok:
                    del self.manifest.fingerprints[key]
            loaded += len(present)
        if loaded < len(keys):
            _logger.warning("embeddings.vectors_missing", missing=len(keys) - loaded)
            self.manifest.offset = 0  # re-read the catalog to find the lost items again
        return loaded

    # -- runs -------------------------------------------------------------------------

    def run(self, progress: Progress | None = None) -> JobReport:
        """Encode the items changed since the last run; remove the deleted ones."""
        started = time.perf_counter()
        self.catalog.catch_up()
        target = self.catalog.offset
        if self.manifest.encoder != self.version:
            self._start_over()
        touched = self._touched(self.manifest.offset, target)
        encode, remove = self._plan(touched)
        self._remove(remove)
        self._encode(encode, progress)
        if remove or encode or target != self.manifest.offset:
            self.manifest.offset = target
            self._write_manifest()
        seconds = time.perf_counter() - started
        return JobReport(
            encoded=len(encode), removed=len(remove),
            unchanged=len(touched) - len(encode) - len(remove), offset=target,
            seconds=seconds, items_per_s=len(encode) / seconds if encode else 0.0,
        )  # fmt: skip

    def _start_over(self) -> None:
        """A new encoder: every item is encoded again, read from the catalog's start."""
        gone = [key for key in self.manifest.fingerprints if key not in self.catalog]
        self._remove(gone)
        self.manifest = Manifest(encoder=self.version)

    def _remove(self, keys: list[str]) -> None:
        if keys:
            self.store.delete_many(keys)
            self.index.remove(keys)
            for key in keys:
                self.manifest.fingerprints.pop(key, None)

    def _touched(self, start: int, end: int) -> set[str]:
        """Ids of the items changed in catalog records [start, end)."""
        log = self.catalog_log
        if start < log.start_offset:  # records gone: compare every item
            return {item.item_id for item in self.catalog.items()} | set(
                self.manifest.fingerprints
            )
        touched: set[str] = set()
        offset = start
        while offset < end:
            records = log.read(offset, min(1000, end - offset))
            if not records:
                break
            for record in records:
                try:
                    touched.add(decode_catalog_change(record.value).item_id)
                except msgspec.DecodeError:
                    continue  # the catalog view skips (and logs) it too
            offset = records[-1].offset + 1
        return touched

    def _plan(self, touched: set[str]) -> tuple[dict[str, _Todo], list[str]]:
        """Items to encode (id -> (text, fingerprint, photo)) and ids to remove."""
        fingerprints = self.manifest.fingerprints
        items = self.catalog.get_many(sorted(touched))
        encode: dict[str, _Todo] = {}
        for item_id, item in items.items():
            text = item_text(item, self.description_chars)
            photo = self.images.locate(item) if self.images is not None else None
            fingerprint = text_fingerprint(text if photo is None else f"{text}\x00{photo.stamp}")
            if fingerprints.get(item_id) != fingerprint:
                encode[item_id] = (text, fingerprint, photo)
        remove = [key for key in sorted(touched) if key not in items and key in fingerprints]
        return encode, remove

    def _encode(self, todo: dict[str, _Todo], progress: Progress | None) -> None:
        # Each chunk is written, manifest included, as it is encoded: a run killed half
        # way resumes at the first item it had not finished (the offset is still the old
        # one, and the finished items' fingerprints match).
        keys = list(todo)
        for start in range(0, len(keys), self.chunk):
            batch = keys[start : start + self.chunk]
            vectors = self.encoder.predict([todo[k][0] for k in batch])
            if self.images is not None:
                vectors = self.images.fuse(batch, vectors, [todo[k][2] for k in batch])
            self.store.put_many(batch, vectors)
            self.index.upsert(batch, vectors)
            for key in batch:
                self.manifest.fingerprints[key] = todo[key][1]
            self._write_manifest()
            if progress is not None:
                progress(start + len(batch), len(keys))
