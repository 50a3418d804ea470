"""Product embeddings: the two-tier constant-work store, the nearest-neighbour index,
the job that keeps them current and the service that answers queries from them.

``TwoTierStore`` serves float32 vectors from a bounded in-process ``LocalTier`` in
front of a remote ``EmbeddingTier`` (``MmapTier`` embedded, or ``RedisTier``), and
issues the same remote read for every request whatever its local hit ratio.
``EmbeddingJob`` encodes what changed in the catalog log into the store and a
``VectorIndex`` (exact, or hnswlib's HNSW); ``EmbeddingService`` ties them to an encoder.
``EmbeddingReplica`` follows them read-only from another process (a recommend replica).
``ImageFusion`` joins product photos' embeddings to the text ones, when configured.
"""

from hotshelf.embeddings._images import ImageFusion, Photo
from hotshelf.embeddings._index import ExactIndex, HnswIndex, VectorIndex, open_index
from hotshelf.embeddings._job import EmbeddingJob, JobReport
from hotshelf.embeddings._local_tier import LocalTier
from hotshelf.embeddings._mmap_tier import MmapTier
from hotshelf.embeddings._redis_tier import RedisTier
from hotshelf.embeddings._replica import EmbeddingReplica
from hotshelf.embeddings._service import EmbeddingService, RankedScore, open_store
from hotshelf.embeddings._store import Fetch, TwoTierStore
from hotshelf.embeddings._text import item_text, text_fingerprint
from hotshelf.embeddings._tier import EmbeddingTier, FoundMask, Vectors

__all__ = [
    "EmbeddingJob",
    "EmbeddingReplica",
    "EmbeddingService",
    "EmbeddingTier",
    "ExactIndex",
    "Fetch",
    "FoundMask",
    "HnswIndex",
    "ImageFusion",
    "JobReport",
    "LocalTier",
    "MmapTier",
    "Photo",
    "RankedScore",
    "RedisTier",
    "TwoTierStore",
    "VectorIndex",
    "Vectors",
    "item_text",
    "open_index",
    "open_store",
    "text_fingerprint",
]
