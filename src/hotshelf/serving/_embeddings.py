"""The embedding endpoints: request bodies, answers, and their checks.

``POST /v1/embeddings`` (vectors of item ids), ``GET /v1/items/{id}/similar``,
``POST /v1/search`` (query text -> items) and ``POST /v1/rank`` (query + candidates ->
scores). Limits come from ``[embeddings]``: ``max_ids`` ids per request, ``k`` up to
``max_k``, queries up to ``max_query_chars``. Every violation is a 422 naming the
field; ids not in the catalog are a 404 naming them.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from hotshelf.embeddings import RankedScore
from hotshelf.errors import FieldProblem, ValidationError
from hotshelf.events import Id
from hotshelf.serving._queries import SimilarQuery, decode_json, parse_query
from hotshelf.stream import ItemScore

if TYPE_CHECKING:
    from hotshelf.config import EmbeddingsConfig
    from hotshelf.embeddings import EmbeddingService

__all__ = [
    "EmbeddingQueries",
    "Embeddings",
    "EmbeddingsRequest",
    "RankRequest",
    "RankedCandidates",
    "SearchRequest",
    "SearchResults",
    "SimilarItems",
]

Count = Annotated[int, msgspec.Meta(ge=1)]
Ids = Annotated[list[Id], msgspec.Meta(min_length=1)]


class EmbeddingsRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Vectors of ``item_ids``; ``encoding`` "base64" sends each as little-endian float32
    bytes (a quarter of the JSON size), "float" as a list of numbers."""

    item_ids: Ids
    encoding: Literal["float", "base64"] = "float"


class SearchRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``k`` catalog items nearest ``query``, leaving out ``exclude``."""

    query: str
    k: Count = 10
    exclude: list[Id] = msgspec.field(default_factory=list)


class RankRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``item_ids`` (duplicates counted once) ordered by relevance to ``query``."""

    query: str
    item_ids: Ids


class ItemEmbedding(msgspec.Struct):
    item_id: str
    embedding: list[float] | str


class Embeddings(msgspec.Struct, kw_only=True):
    """The vectors found; ``missing`` ids have none yet (just added, or the store could
    not answer in time); ``degraded`` is true when the remote tier did not answer."""

    model: str
    dim: int
    items: list[ItemEmbedding]
    missing: list[str]
    degraded: bool


class SimilarItems(msgspec.Struct, kw_only=True):
    """Items nearest ``item_id`` by cosine similarity of text embeddings."""

    item_id: str
    model: str
    items: list[ItemScore]


class SearchResults(msgspec.Struct, kw_only=True):
    """Catalog items nearest the query, best first; scores are cosine similarities."""

    query: str
    model: str
    items: list[ItemScore]


class RankedCandidates(msgspec.Struct, kw_only=True):
    """Candidates by relevance, best first; those without a vector come last, score null."""

    query: str
    model: str
    items: list[RankedScore]


_embeddings_decoder = msgspec.json.Decoder(EmbeddingsRequest)
_search_decoder = msgspec.json.Decoder(SearchRequest)
_rank_decoder = msgspec.json.Decoder(RankRequest)


class EmbeddingQueries:
    """Parses and checks a request, asks ``service``, shapes the answer."""

    def __init__(self, service: EmbeddingService, config: EmbeddingsConfig) -> None:
        self.service = service
        self.config = config

    @property
    def model(self) -> str:
        job = self.service.job
        return "" if job is None else job.version

    def embeddings(self, body: bytes) -> Embeddings:
        request: EmbeddingsRequest = decode_json(body, _embeddings_decoder, "embeddings request")
        ids = list(dict.fromkeys(request.item_ids))
        self._check("item_ids", len(ids), None)
        fetched = self.service.fetch(ids)
        items, missing = [], []
        for item_id, vector, found in zip(ids, fetched.vectors, fetched.found, strict=True):
            if not found:
                missing.append(item_id)
            elif request.encoding == "base64":
                items.append(ItemEmbedding(item_id, base64.b64encode(vector.tobytes()).decode()))
            else:
                items.append(ItemEmbedding(item_id, vector.tolist()))
        dim = fetched.vectors.shape[1]
        return Embeddings(model=self.model, dim=dim, items=items, missing=missing,
                          degraded=fetched.degraded)  # fmt: skip

    def similar(self, item_id: str, params: dict[str, str]) -> SimilarItems:
        query = parse_query(SimilarQuery, params)
        self._check("item_ids", 0, query.k)
        items = self.service.similar(item_id, query.k)
        return SimilarItems(item_id=item_id, model=self.model, items=items)

    def search(self, body: bytes) -> SearchResults:
        request: SearchRequest = decode_json(body, _search_decoder, "search request")
        self._check("exclude", len(request.exclude), request.k)
        items = self.service.search(request.query, request.k, request.exclude)
        return SearchResults(query=request.query, model=self.model, items=items)

    def rank(self, body: bytes) -> RankedCandidates:
        request: RankRequest = decode_json(body, _rank_decoder, "rank request")
        ids = list(dict.fromkeys(request.item_ids))
        self._check("item_ids", len(ids), None)
        items = self.service.rank(request.query, ids)
        return RankedCandidates(query=request.query, model=self.model, items=items)

    def _check(self, field: str, ids: int, k: int | None) -> None:
        cfg, problems = self.config, []
        if ids > cfg.max_ids:
            problems.append(FieldProblem(field, f"at most {cfg.max_ids} ids (embeddings.max_ids)"))
        if k is not None and k > cfg.max_k:
            problems.append(FieldProblem("k", f"must be at most {cfg.max_k} (embeddings.max_k)"))
        if problems:
            raise ValidationError("invalid request", problems)
