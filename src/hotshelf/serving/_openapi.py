"""The OpenAPI 3.1 document, built from the msgspec JSON schemas of the API's types."""

from __future__ import annotations

from typing import Any

import msgspec

from hotshelf import __version__
from hotshelf.events import Event, Item
from hotshelf.recommend import OnlineMetrics, Recommendations, RecommendRequest
from hotshelf.serving._embeddings import (
    Embeddings,
    EmbeddingsRequest,
    RankedCandidates,
    RankRequest,
    SearchRequest,
    SearchResults,
    SimilarItems,
)
from hotshelf.serving._queries import BotsQuery, RankQuery, RelatedQuery, SimilarQuery
from hotshelf.serving._schemas import (
    Bots,
    ErrorBody,
    EventsAccepted,
    Health,
    ItemsAccepted,
    RankedItems,
    Readiness,
    RelatedItems,
)

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{name}"


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Malformed request",
        404: "Not found",
        409: "An event id is being written by a concurrent request; retry",
        413: "Body, batch or property limits exceeded",
        415: "Unsupported Content-Type",
        422: "Invalid input; `problems` lists every bad field with its JSON path",
        503: "Starting, stopping, the log is unavailable, or (read endpoints) the stream "
        "processor or the embeddings are off (stream.serve, embeddings.serve = false) or "
        "stopped, or the item has no embedding yet",
    }
    err = {"$ref": _REF.format(name="ErrorBody")}
    return {str(s): {"description": reasons[s], "content": _json(err)} for s in statuses}


_PARAMETERS = {
    "location": "Segment location as events send it (e.g. `London, GB`); absent or `*`: all",
    "device": "Segment device (mobile, desktop, tablet, ...); absent or `*`: all",
    "category": "Segment top-level catalog category; absent or `*`: all",
    "window": "Window in seconds, one of `stream.windows_s`; default the shortest",
    "k": "How many items, at most `stream.top_k`",
    "kind": "Items viewed, carted or bought in the same sessions",
    "limit": "How many flagged visitors, most recently seen first",
}


def _query_parameters(kind: type[msgspec.Struct]) -> list[dict[str, Any]]:
    """OpenAPI query parameters from the struct the endpoint parses its query into."""
    schema = msgspec.json.schema(kind)["$defs"][kind.__name__]
    out = []
    for name, prop in schema["properties"].items():
        prop = {k: v for k, v in prop.items() if k != "default" or v is not None}
        for branch in prop.pop("anyOf", []):
            if branch != {"type": "null"}:  # absent, not null, in a query string
                prop.update(branch)
        out.append({"name": name, "in": "query", "description": _PARAMETERS[name], "schema": prop})
    return out


def _get(operation: str, summary: str, query: type[msgspec.Struct], answer: Any) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "operationId": operation,
            "parameters": _query_parameters(query),
            "responses": {
                "200": {"description": "The answer", "content": _json(answer)},
                **_errors(422, 503),
            },
        }
    }


def _stream_paths(ranked: Any, related: Any, bots: Any) -> dict[str, Any]:
    """The read endpoints over the stream processor's state."""
    trending = "Items rising against their baseline in a segment (z-score)"
    popular = "Items with the most decayed engagement in a segment"
    paths = {
        "/v1/trending": _get("getTrending", trending, RankQuery, ranked),
        "/v1/popular": _get("getPopular", popular, RankQuery, ranked),
        "/v1/items/{item_id}/related": _get(
            "getRelated", "Items engaged with in the same sessions", RelatedQuery, related
        ),
        "/v1/bots": _get("getBots", "Visitors the bot filter flags now", BotsQuery, bots),
    }
    path_id = {"name": "item_id", "in": "path", "required": True, "schema": {"type": "string"}}
    paths["/v1/items/{item_id}/related"]["get"]["parameters"].insert(0, path_id)
    return paths


def _post(operation: str, summary: str, request: Any, answer: Any) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "operationId": operation,
            "requestBody": {"required": True, "content": _json(request)},
            "responses": {
                "200": {"description": "The answer", "content": _json(answer)},
                **_errors(404, 413, 415, 422, 503),
            },
        }
    }


def _embedding_paths(
    vectors_in: Any, search_in: Any, rank_in: Any,
    vectors: Any, similar: Any, search: Any, ranked: Any,
) -> dict[str, Any]:  # fmt: skip
    """The endpoints over the product embeddings."""
    similar_path = _get("getSimilar", "Items nearest by text embedding", SimilarQuery, similar)
    operation = similar_path["get"]
    path_id = {"name": "item_id", "in": "path", "required": True, "schema": {"type": "string"}}
    operation["parameters"][0]["description"] = "How many items, at most `embeddings.max_k`"
    operation["parameters"].insert(0, path_id)
    operation["responses"].update(_errors(404))
    return {
        "/v1/embeddings": _post("postEmbeddings", "Vectors of catalog items", vectors_in, vectors),
        "/v1/items/{item_id}/similar": similar_path,
        "/v1/search": _post("postSearch", "Catalog items nearest a query text", search_in, search),
        "/v1/rank": _post(
            "postRank", "Candidates ordered by relevance to a query", rank_in, ranked
        ),
    }


def _recommend_paths(request: Any, answer: Any, online: Any) -> dict[str, Any]:
    """Recommendations and the online metrics of what they served."""
    recommend = _post("postRecommend", "Items for a shopper's context, routed", request, answer)
    recommend["post"]["description"] = (
        "A new visitor gets generic picks for their location and device, a known one "
        "collaborative filtering, a session browsing now items like what it views; several "
        "apply: blended. Each item says its route and why (`reason`). The list is logged "
        "as an impression (`impression_id`): send it in a click's "
        "`properties.impression_id` to attribute the click."
    )
    metrics = {
        "get": {
            "summary": "CTR and conversion per experiment arm and route, attributed so far",
            "operationId": "getOnlineMetrics",
            "responses": {
                "200": {"description": "The answer", "content": _json(online)},
                **_errors(503),
            },
        }
    }
    return {"/v1/recommend": recommend, "/v1/metrics/online": metrics}


def openapi_document() -> dict[str, Any]:
    """The API description served at ``/openapi.json``."""
    (event, events, item, items, accepted, items_ok, error, health, ready, *rest), components = (
        msgspec.json.schema_components(
            [Event, list[Event], Item, list[Item], EventsAccepted, ItemsAccepted, ErrorBody,
             Health, Readiness, RankedItems, RelatedItems, Bots, EmbeddingsRequest,
             SearchRequest, RankRequest, Embeddings, SimilarItems, SearchResults,
             RankedCandidates, RecommendRequest, Recommendations, OnlineMetrics],
            ref_template=_REF,
        )
    )  # fmt: skip
    stream, embedding, recommend = rest[:3], rest[3:10], rest[10:]
    del error  # referenced through _errors
    paths: dict[str, Any] = {
        "/v1/events": {
            "post": {
                "summary": "Ingest clickstream events",
                "description": (
                    "One event, a JSON array, or NDJSON (one event per line). All or nothing: "
                    "one invalid event rejects the whole request. Answers once the events "
                    "are durable; events whose event_id was already stored are acknowledged "
                    "as duplicates and not stored again, so retries are safe."
                ),
                "operationId": "postEvents",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"oneOf": [event, events]}},
                        "application/x-ndjson": {"schema": event},
                    },
                },
                "responses": {
                    "200": {"description": "Durably stored", "content": _json(accepted)},
                    **_errors(409, 413, 415, 422, 503),
                },
            }
        },
        "/v1/items": {
            "post": {
                "summary": "Add or replace catalog items",
                "operationId": "postItems",
                "requestBody": {
                    "required": True,
                    "content": _json({"oneOf": [item, items]}),
                },
                "responses": {
                    "200": {"description": "Durably stored", "content": _json(items_ok)},
                    **_errors(413, 415, 422, 503),
                },
            }
        },
        "/v1/items/{item_id}": {
            "get": {
                "summary": "One catalog item",
                "operationId": "getItem",
                "parameters": [
                    {
                        "name": "item_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {"description": "The item", "content": _json(item)},
                    **_errors(404, 503),
                },
            }
        },
        **_stream_paths(*stream),
        **_embedding_paths(*embedding),
        **_recommend_paths(*recommend),
        "/healthz": {
            "get": {
                "summary": "Liveness: the process answers",
                "operationId": "healthz",
                "responses": {"200": {"description": "Alive", "content": _json(health)}},
            }
        },
        "/readyz": {
            "get": {
                "summary": (
                    "Readiness: logs open, catalog caught up, stream processor running "
                    "(and its lag), catalog embedded (and its lag), damage found at recovery"
                ),
                "operationId": "readyz",
                "responses": {
                    "200": {"description": "Ready", "content": _json(ready)},
                    "503": {"description": "Not ready", "content": _json(ready)},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {"200": {"description": "OpenAPI 3.1", "content": _json({})}},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hotshelf",
            "version": __version__,
            "description": "Real-time recommendations for online stores.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }
