"""Query strings and JSON bodies of the read endpoints, parsed strictly into typed structs.

Each endpoint's parameters are one msgspec struct: converting the query dict with
``strict=False`` turns "20" into 20 and rejects "abc", "1.5", ``k=0`` and unknown
names, and the same struct describes the parameters in the OpenAPI document. What
depends on the configuration (``window`` among ``stream.windows_s``, ``k`` up to
``stream.top_k``) is checked after. Every problem is a 422 naming the parameter.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from hotshelf.config import StreamConfig
from hotshelf.errors import FieldProblem, ValidationError

__all__ = [
    "BotsQuery",
    "RankQuery",
    "RelatedQuery",
    "SimilarQuery",
    "check_related",
    "decode_json",
    "parse_query",
    "rank_window",
]

Text = Annotated[str, msgspec.Meta(max_length=256)]
Count = Annotated[int, msgspec.Meta(ge=1)]


class RankQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``GET /v1/trending`` and ``/v1/popular``: a segment ("*" or absent = all), a window
    (seconds, one of ``stream.windows_s``; default the shortest) and ``k`` items."""

    location: Text | None = None
    device: Text | None = None
    category: Text | None = None
    window: float | None = None
    k: Count = 20


class RelatedQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``GET /v1/items/{item_id}/related``: items ``kind`` in the same sessions."""

    kind: Literal["viewed", "carted", "bought"] = "viewed"
    k: Count = 20


class BotsQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``GET /v1/bots``: at most ``limit`` flagged visitors, most recently seen first."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


class SimilarQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``GET /v1/items/{item_id}/similar``: the ``k`` nearest items by text embedding
    (up to ``embeddings.max_k``)."""

    k: Count = 10


Q = TypeVar("Q", RankQuery, RelatedQuery, BotsQuery, SimilarQuery)

_UNKNOWN = re.compile(r"unknown field `(?P<name>[^`]*)`")
_AT = re.compile(r" - at `\$\.(?P<name>[^`]*)`$")


def parse_query(kind: type[Q], params: dict[str, str]) -> Q:
    """``params`` as ``kind``; ``ValidationError`` naming the bad parameter."""
    try:
        return msgspec.convert(params, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise ValidationError("invalid query parameters", [_problem(kind, str(exc))]) from None


def decode_json(body: bytes, decoder: msgspec.json.Decoder[Any], what: str) -> Any:
    """``body`` decoded by ``decoder``; ``ValidationError`` with the JSON path of the first
    problem (``what`` names the thing sent, "item" or "search request")."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        message, sep, where = str(exc).partition(" - at `")
        path = where.rstrip("`") if sep else "$"
        raise ValidationError(f"invalid {what}", [FieldProblem(path, message)]) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        problem = (
            "the body is not valid UTF-8"
            if isinstance(exc, UnicodeDecodeError)
            else (f"malformed JSON: {exc}")
        )
        raise ValidationError("malformed request body", [FieldProblem("$", problem)]) from None


def _problem(kind: type[msgspec.Struct], message: str) -> FieldProblem:
    unknown = _UNKNOWN.search(message)
    if unknown is not None:
        known = ", ".join(kind.__struct_fields__)
        return FieldProblem(unknown["name"], f"unknown query parameter; known: {known}")
    at = _AT.search(message)
    if at is None:
        return FieldProblem("$", message)
    return FieldProblem(at["name"], message[: at.start()])


def rank_window(query: RankQuery, config: StreamConfig) -> float:
    """The window asked for (default the shortest), with ``window`` and ``k`` checked
    against the configuration."""
    problems = []
    windows = sorted(config.windows_s)
    window = windows[0] if query.window is None else query.window
    if window not in windows:
        known = ", ".join(f"{w:g}" for w in windows)
        problems.append(FieldProblem("window", f"must be one of {known} (seconds)"))
    problems += _k_problems(query.k, config)
    if problems:
        raise ValidationError("invalid query parameters", problems)
    return window


def check_related(query: RelatedQuery, config: StreamConfig) -> None:
    """``ValidationError`` when ``k`` is past ``stream.top_k``."""
    problems = _k_problems(query.k, config)
    if problems:
        raise ValidationError("invalid query parameters", problems)


def _k_problems(k: int, config: StreamConfig) -> list[FieldProblem]:
    if k > config.top_k:
        return [FieldProblem("k", f"must be at most {config.top_k} (stream.top_k)")]
    return []
