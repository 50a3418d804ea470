"""Decoding and validating event batches from HTTP bodies.

The fast path is one msgspec decode of the whole body followed by a tight loop of
semantic checks. Only when that decode fails do we take the slow path, which decodes
to plain JSON values and converts each field on its own, so a 422 lists *every*
problem in the request rather than the first one msgspec stumbled on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Final

import msgspec

from hotshelf.config import EventsConfig, ServerConfig
from hotshelf.errors import (
    FieldProblem,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from hotshelf.events._model import ITEM_TYPES, Event, EventType

__all__ = ["JSON_TYPES", "NDJSON_TYPES", "check_events", "decode_events", "media_kind"]

JSON_TYPES: Final = frozenset({"application/json"})
NDJSON_TYPES: Final = frozenset({"application/x-ndjson", "application/ndjson"})

_list_decoder = msgspec.json.Decoder(list[Event])
_one_decoder = msgspec.json.Decoder(Event)
_raw_decoder = msgspec.json.Decoder()
_json_encoder = msgspec.json.Encoder()
_FIELD_TYPES: Final[dict[str, Any]] = {f.encode_name: f.type for f in msgspec.structs.fields(Event)}
# Errors a malformed body can raise from msgspec: bad JSON or types, invalid UTF-8
# inside strings, and nesting deeper than the decoder's recursion limit.
_DECODE_ERRORS: Final = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def media_kind(content_type: str | None) -> str:
    """``"json"`` or ``"ndjson"`` for a Content-Type header; 415 for anything else."""
    media = (content_type or "").partition(";")[0].strip().lower()
    if media in JSON_TYPES:
        return "json"
    if media in NDJSON_TYPES:
        return "ndjson"
    shown = media or "no Content-Type"
    raise UnsupportedMediaTypeError(
        f"{shown} is not supported; send application/json (one event or an array) "
        "or application/x-ndjson (one event per line)"
    )


def decode_events(
    body: bytes, content_type: str | None, cfg: EventsConfig, server: ServerConfig
) -> list[Event]:
    """Decode and validate a request body; raises ``ValidationError`` listing every problem."""
    kind = media_kind(content_type)
    if len(body) > server.max_body_bytes:
        raise PayloadTooLargeError(
            f"request body is {len(body)} bytes; the limit is {server.max_body_bytes}"
        )
    try:
        events, single = _decode_fast(body, kind)
    except _DECODE_ERRORS:
        events, single = _decode_slow(body, kind, cfg, server)
    _check_count(len(events), server)
    problems = check_events(events, cfg, single=single)
    if problems:
        raise _invalid(problems)
    return events


def check_events(
    events: list[Event], cfg: EventsConfig, *, now_ms: int | None = None, single: bool = False
) -> list[FieldProblem]:
    """Semantic checks msgspec's types cannot express; returns every problem found.

    Paths are ``$[i].field``, or ``$.field`` when ``single`` (the body was one object).
    """
    lo, hi = _time_bounds(cfg, now_ms)
    problems: list[FieldProblem] = []
    for i, event in enumerate(events):
        if event.properties is None and _looks_valid(event, lo, hi):
            continue
        _collect(event, "$" if single else f"$[{i}]", lo, hi, cfg, problems)
    return problems


def _time_bounds(cfg: EventsConfig, now_ms: int | None) -> tuple[float, float]:
    now = time.time() * 1000.0 if now_ms is None else float(now_ms)
    return now - cfg.max_past_skew_s * 1000.0, now + cfg.max_future_skew_s * 1000.0


def _collect(
    event: Event, path: str, lo: float, hi: float, cfg: EventsConfig, out: list[FieldProblem]
) -> None:
    if not _looks_valid(event, lo, hi):
        out.extend(_event_problems(event, path, lo, hi, cfg))
    if event.properties is not None:
        _check_properties(event.properties, f"{path}.properties", cfg, out)


def _decode_fast(body: bytes, kind: str) -> tuple[list[Event], bool]:
    """The whole body in one decode; the flag says it was a single JSON object."""
    if kind == "ndjson":
        # Lines joined into one array. This also accepts two objects separated by a
        # comma on one line, a harmless leniency.
        return _list_decoder.decode(b"[" + body.strip().replace(b"\n", b",") + b"]"), False
    if body.lstrip()[:1] == b"{":
        return [_one_decoder.decode(body)], True
    return _list_decoder.decode(body), False


def _check_count(count: int, server: ServerConfig) -> None:
    if count > server.max_events_per_request:
        raise PayloadTooLargeError(
            f"{count} events in one request; the limit is {server.max_events_per_request}"
        )
    if count == 0:
        raise ValidationError(
            "no events in the request body", [FieldProblem("$", "expected at least one event")]
        )


def _invalid(problems: list[FieldProblem]) -> ValidationError:
    return ValidationError(
        f"{len(problems)} problem(s) in the request; nothing was accepted", problems
    )


# -- semantic checks -------------------------------------------------------------------


def _ts_ms(ts: datetime | float) -> float | None:
    """Epoch ms of a client timestamp, None when it has no timezone."""
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            return None
        return ts.timestamp() * 1000.0
    return ts * 1000.0


def _looks_valid(event: Event, lo: float, hi: float) -> bool:
    """The common case in one cheap expression; ``_event_problems`` explains failures."""
    if event.user_id is None and event.cookie_id is None:
        return False
    kind = event.type
    if kind in ITEM_TYPES:
        ok = event.item_id is not None
    elif kind is EventType.IMPRESSION:
        ok = bool(event.item_ids)
    elif kind is EventType.SEARCH:
        ok = event.query is not None
    else:  # purchase
        ok = event.item_id is not None or bool(event.item_ids)
    if not ok:
        return False
    ts = event.timestamp
    if ts is None:
        return True
    ms = _ts_ms(ts)
    return ms is not None and lo <= ms <= hi


def _event_problems(
    event: Event, path: str, lo: float, hi: float, cfg: EventsConfig
) -> Iterator[FieldProblem]:
    if event.user_id is None and event.cookie_id is None:
        yield FieldProblem(path, "an event needs user_id or cookie_id")
    kind = event.type
    if kind in ITEM_TYPES and event.item_id is None:
        yield FieldProblem(f"{path}.item_id", f"required for {kind.value} events")
    elif kind is EventType.IMPRESSION and not event.item_ids:
        yield FieldProblem(f"{path}.item_ids", "impression events need a non-empty list")
    elif kind is EventType.SEARCH and event.query is None:
        yield FieldProblem(f"{path}.query", "required for search events")
    elif kind is EventType.PURCHASE and event.item_id is None and not event.item_ids:
        yield FieldProblem(f"{path}.item_id", "purchase events need item_id or item_ids")
    if event.timestamp is not None:
        problem = _timestamp_problem(event.timestamp, lo, hi, cfg)
        if problem:
            yield FieldProblem(f"{path}.timestamp", problem)


def _timestamp_problem(ts: datetime | float, lo: float, hi: float, cfg: EventsConfig) -> str:
    ms = _ts_ms(ts)
    if ms is None:
        return "timestamp needs a timezone (e.g. 2024-05-01T12:00:00Z)"
    if not math.isfinite(ms):
        return "timestamp must be a finite number"
    if ms < lo:
        return f"timestamp is more than {cfg.max_past_skew_s:g} s in the past"
    if ms > hi:
        return f"timestamp is more than {cfg.max_future_skew_s:g} s in the future"
    return ""


def _check_properties(
    props: dict[str, Any], path: str, cfg: EventsConfig, problems: list[FieldProblem]
) -> None:
    before = len(problems)
    if len(props) > cfg.max_properties:
        problems.append(
            FieldProblem(path, f"{len(props)} properties; the limit is {cfg.max_properties}")
        )
    _walk(props, path, 1, cfg, problems)
    if len(problems) == before:
        size = len(_json_encoder.encode(props))
        if size > cfg.max_properties_bytes:
            problems.append(
                FieldProblem(
                    path, f"properties take {size} bytes; the limit is {cfg.max_properties_bytes}"
                )
            )


def _walk(
    value: dict[str, Any] | list[Any],
    path: str,
    depth: int,
    cfg: EventsConfig,
    problems: list[FieldProblem],
) -> None:
    """Check nesting, string lengths and finiteness; never descends past the depth limit."""
    if depth > cfg.max_property_depth:
        problems.append(FieldProblem(path, f"nested deeper than {cfg.max_property_depth} levels"))
        return
    limit = cfg.max_string_chars
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(key, str) and len(key) > limit:
            problems.append(FieldProblem(path, f"a key is longer than {limit} characters"))
        cls = item.__class__
        if cls is str:
            if len(item) > limit:
                problems.append(
                    FieldProblem(_child(path, key), f"string longer than {limit} characters")
                )
        elif cls is float:
            if not math.isfinite(item):
                problems.append(FieldProblem(_child(path, key), "NaN and infinity are not allowed"))
        elif cls is dict or cls is list:
            _walk(item, _child(path, key), depth + 1, cfg, problems)


def _child(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"


# -- the slow path: report every bad field ---------------------------------------------


def _decode_slow(
    body: bytes, kind: str, cfg: EventsConfig, server: ServerConfig
) -> tuple[list[Event], bool]:
    problems: list[FieldProblem] = []
    raws, single = _raw_ndjson(body, problems) if kind == "ndjson" else _raw_json(body)
    _check_count(len(raws), server)
    lo, hi = _time_bounds(cfg, None)
    events: list[Event] = []
    for i, raw in enumerate(raws):
        if raw is _UNREADABLE:
            continue
        path = "$" if single else f"$[{i}]"
        event = _convert_event(raw, path, lo, hi, cfg, problems)
        if event is not None:
            _collect(event, path, lo, hi, cfg, problems)
            events.append(event)
    if problems:
        raise _invalid(problems)
    # Every field converts on its own yet the body failed as a whole: should not
    # happen, but if it does the request is still answered with a 422, not a 500.
    if len(events) != len(raws):
        raise _invalid([FieldProblem("$", "the request body could not be decoded")])
    return events, single


_UNREADABLE: Final = object()


def _raw_json(body: bytes) -> tuple[list[Any], bool]:
    try:
        value = _raw_decoder.decode(body)
    except _DECODE_ERRORS as exc:
        raise _invalid([FieldProblem("$", _decode_message(exc))]) from None
    if isinstance(value, dict):
        return [value], True
    if isinstance(value, list):
        return value, False
    raise _invalid([FieldProblem("$", "expected an event object or an array of events")])


def _raw_ndjson(body: bytes, problems: list[FieldProblem]) -> tuple[list[Any], bool]:
    raws: list[Any] = []
    for lineno, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            raws.append(_raw_decoder.decode(line))
        except _DECODE_ERRORS as exc:
            message = f"line {lineno}: {_decode_message(exc)}"
            problems.append(FieldProblem(f"$[{len(raws)}]", message))
            raws.append(_UNREADABLE)
    return raws, False


def _decode_message(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "the body is not valid UTF-8"
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    return f"malformed JSON: {exc}"


def _convert_event(
    raw: Any, path: str, lo: float, hi: float, cfg: EventsConfig, problems: list[FieldProblem]
) -> Event | None:
    """The event when every field converts; otherwise None, with the problems added."""
    if not isinstance(raw, dict):
        problems.append(FieldProblem(path, f"expected an event object, got {_json_kind(raw)}"))
        return None
    try:  # most events of a rejected body are fine: one conversion settles those
        return msgspec.convert(raw, Event)
    except (msgspec.ValidationError, RecursionError):
        pass
    good: dict[str, Any] = {}
    bad = False
    for key, value in raw.items():
        field_path = f"{path}.{key}"
        field_type = _FIELD_TYPES.get(key)
        if field_type is None:
            problems.append(FieldProblem(field_path, "unknown field"))
            bad = True
            continue
        try:
            good[key] = msgspec.convert(value, field_type)
        except (msgspec.ValidationError, RecursionError) as exc:
            problems.append(_field_problem(field_path, exc))
            bad = True
            if key in _STAND_INS:
                good[key] = _STAND_INS[key]
    if "type" not in raw:
        problems.append(FieldProblem(f"{path}.type", "required field is missing"))
    if "type" not in good:
        return None
    event = Event(**good)
    if bad:
        # The semantic checks still run on what did convert; a malformed field that a
        # rule needs has a stand-in value, so it is not reported a second time as missing.
        _collect(event, path, lo, hi, cfg, problems)
        return None
    return event


# Valid values for malformed fields that semantic rules look at (presence only).
_STAND_INS: Final[dict[str, Any]] = {
    "user_id": "?",
    "cookie_id": "?",
    "item_id": "?",
    "item_ids": ["?"],
    "query": "?",
}


def _field_problem(path: str, exc: BaseException) -> FieldProblem:
    if isinstance(exc, RecursionError):
        return FieldProblem(path, "nested too deeply")
    message, sep, where = str(exc).partition(" - at `$")
    if sep:
        path += where.rstrip("`")
    return FieldProblem(path, message)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__
