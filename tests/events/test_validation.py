"""decode_events: body shapes, every validation rule, every-bad-field reporting."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotshelf.config import EventsConfig, ServerConfig
from hotshelf.errors import PayloadTooLargeError, UnsupportedMediaTypeError, ValidationError
from hotshelf.events import Event, EventType, check_events, decode_events, media_kind

CFG = EventsConfig()
SERVER = ServerConfig()
JSON = "application/json"
NDJSON = "application/x-ndjson"


def ev(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": "view", "user_id": "u1", "item_id": "i1"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def enc(value: Any) -> bytes:
    return msgspec.json.encode(value)


def ndjson(*events: dict[str, Any]) -> bytes:
    return b"\n".join(enc(e) for e in events) + b"\n"


def problems_of(body: bytes, content_type: str = JSON, **cfg: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        decode_events(body, content_type, EventsConfig(**cfg), SERVER)
    assert type(info.value) is ValidationError
    return {p.path: p.problem for p in info.value.problems}


# -- body shapes and media types -------------------------------------------------------


def test_one_object() -> None:
    [event] = decode_events(enc(ev()), JSON, CFG, SERVER)
    assert event.type is EventType.VIEW
    assert event.item_id == "i1"


def test_array() -> None:
    events = decode_events(enc([ev(item_id="a"), ev(item_id="b")]), JSON, CFG, SERVER)
    assert [e.item_id for e in events] == ["a", "b"]


@pytest.mark.parametrize("sep", [b"\n", b"\r\n", b"\n\n"])
def test_ndjson_lines_and_blank_lines(sep: bytes) -> None:
    body = sep.join(enc(ev(item_id=str(i))) for i in range(3)) + sep
    events = decode_events(body, NDJSON, CFG, SERVER)
    assert [e.item_id for e in events] == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        ("application/json", "json"),
        ("Application/JSON; charset=utf-8", "json"),
        ("application/x-ndjson", "ndjson"),
        ("application/ndjson", "ndjson"),
    ],
)
def test_media_kind(header: str, kind: str) -> None:
    assert media_kind(header) == kind


@pytest.mark.parametrize("header", [None, "", "text/plain", "application/xml", "multipart/form"])
def test_unsupported_media_type(header: str | None) -> None:
    with pytest.raises(UnsupportedMediaTypeError) as info:
        decode_events(enc(ev()), header, CFG, SERVER)
    assert info.value.status == 415


def test_body_too_large() -> None:
    body = enc([ev()] * 50)
    with pytest.raises(PayloadTooLargeError) as info:
        decode_events(body, JSON, CFG, ServerConfig(max_body_bytes=len(body) - 1))
    assert info.value.status == 413


@pytest.mark.parametrize("bad", [False, True])
def test_too_many_events(bad: bool) -> None:
    events = [ev(item_id=str(i)) for i in range(6)]
    if bad:  # the count is checked before the slow path looks at every field
        events[0]["timestamp"] = "yesterday"
    with pytest.raises(PayloadTooLargeError):
        decode_events(enc(events), JSON, CFG, ServerConfig(max_events_per_request=5))


@pytest.mark.parametrize("body", [b"[]", b"", b"\n\n"])
def test_no_events(body: bytes) -> None:
    ctype = NDJSON if body != b"[]" else JSON
    with pytest.raises(ValidationError) as info:
        decode_events(body, ctype, CFG, SERVER)
    assert info.value.status == 422


# -- malformed bodies ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"type": "view",', "malformed JSON"),
        (b"NaN", "malformed JSON"),
        (b'{"type": "view", "user_id": "\xff\xfe", "item_id": "i"}', "not valid UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"42", "expected an event object or an array"),
        (b'"view"', "expected an event object or an array"),
    ],
)
def test_malformed_body(body: bytes, expected: str) -> None:
    found = problems_of(body)
    assert expected in found["$"]


def test_ndjson_reports_each_bad_line() -> None:
    body = enc(ev()) + b"\n{oops\n" + enc(ev()) + b"\n[1, 2]\n" + enc(ev(user_id=5)) + b"\n"
    found = problems_of(body, NDJSON)
    assert "line 2" in found["$[1]"]
    assert found["$[3]"].startswith("expected an event object")
    assert "$[4].user_id" in found
    assert len(found) == 3


def test_non_object_in_array() -> None:
    found = problems_of(enc([ev(), 7, None, "x"]))
    assert set(found) == {"$[1]", "$[2]", "$[3]"}


# -- every bad field -------------------------------------------------------------------


def test_every_bad_field_is_reported() -> None:
    events = [
        ev(),
        ev(timestamp=True, user_id=7, colour="red"),
        ev(type="teleport", item_ids=["ok", "", "x" * 200]),
        ev(item_id="", query=""),
        {"user_id": "u"},
    ]
    found = problems_of(enc(events))
    assert set(found) == {
        "$[1].timestamp",
        "$[1].user_id",
        "$[1].colour",
        "$[2].type",
        "$[2].item_ids[1]",  # msgspec stops at the first bad element of a list
        "$[3].item_id",
        "$[3].query",
        "$[4].type",
    }
    assert found["$[1].colour"] == "unknown field"
    assert found["$[4].type"] == "required field is missing"
    assert "Invalid enum value 'teleport'" in found["$[2].type"]


def test_single_object_paths_have_no_index() -> None:
    found = problems_of(enc(ev(user_id=1, timestamp="nope")))
    assert set(found) == {"$.user_id", "$.timestamp"}


def test_semantic_problems_are_reported_alongside_type_problems() -> None:
    # session_id is the wrong type AND the event has no user: both are reported,
    # but a field already reported as malformed is not also reported as missing.
    found = problems_of(enc([ev(user_id=..., session_id=3, item_id=4)]))
    assert set(found) == {"$[0]", "$[0].session_id", "$[0].item_id"}
    assert "user_id or cookie_id" in found["$[0]"]


# -- semantic rules --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "path"),
    [
        (ev(user_id=...), "$[0]"),
        (ev(type="view", item_id=...), "$[0].item_id"),
        (ev(type="click", item_id=...), "$[0].item_id"),
        (ev(type="add_to_cart", item_id=...), "$[0].item_id"),
        (ev(type="impression", item_id=...), "$[0].item_ids"),
        (ev(type="impression", item_id=..., item_ids=[]), "$[0].item_ids"),
        (ev(type="search", item_id=...), "$[0].query"),
        (ev(type="purchase", item_id=...), "$[0].item_id"),
        (ev(type="purchase", item_id=..., item_ids=[]), "$[0].item_id"),
    ],
)
def test_semantic_rule(event: dict[str, Any], path: str) -> None:
    found = problems_of(enc([event, ev()]))
    assert list(found) == [path]


@pytest.mark.parametrize(
    "event",
    [
        ev(user_id=..., cookie_id="c1"),
        ev(type="impression", item_id=..., item_ids=["a", "b"]),
        ev(type="search", item_id=..., query="red shoes"),
        ev(type="purchase", item_id=..., item_ids=["a"]),
        ev(type="purchase"),
    ],
)
def test_semantic_rule_satisfied(event: dict[str, Any]) -> None:
    assert len(decode_events(enc([event]), JSON, CFG, SERVER)) == 1


def test_timestamp_forms() -> None:
    now = time.time()
    events = [
        ev(timestamp=now),
        ev(timestamp=int(now)),
        ev(timestamp=datetime.fromtimestamp(now, UTC).isoformat()),
        ev(timestamp="2024-01-01T00:00:00+02:00"),
    ]
    decoded = decode_events(enc(events[:3]), JSON, CFG, SERVER)
    assert len(decoded) == 3
    found = problems_of(enc(events[3:]), max_past_skew_s=3600)
    assert "in the past" in found["$[0].timestamp"]


@pytest.mark.parametrize(
    ("offset_s", "expected"),
    [(-3601, "in the past"), (301, "in the future")],
)
def test_timestamp_skew(offset_s: float, expected: str) -> None:
    found = problems_of(enc([ev(timestamp=time.time() + offset_s)]), max_past_skew_s=3600)
    assert expected in found["$[0].timestamp"]


def test_naive_datetime_is_rejected() -> None:
    naive = datetime.now(UTC).replace(tzinfo=None).isoformat()
    found = problems_of(enc([ev(timestamp=naive)]))
    assert "timezone" in found["$[0].timestamp"]


def test_huge_number_is_rejected() -> None:
    found = problems_of(b'[{"type": "view", "user_id": "u", "item_id": "i", "timestamp": 1e999}]')
    assert "out of range" in found["$"]


# -- properties ------------------------------------------------------------------------


def test_properties_within_limits() -> None:
    props = {"a": 1, "b": [1, 2.5, {"c": "x"}], "d": None, "e": True}
    [event] = decode_events(enc([ev(properties=props)]), JSON, CFG, SERVER)
    assert event.properties == props


@pytest.mark.parametrize(
    ("props", "cfg", "path", "expected"),
    [
        ({str(i): i for i in range(5)}, {"max_properties": 4}, "$[0].properties", "limit is 4"),
        ({"a": {"b": {"c": 1}}}, {"max_property_depth": 2}, "$[0].properties.a.b", "deeper"),
        ({"a": [[1]]}, {"max_property_depth": 2}, "$[0].properties.a[0]", "deeper"),
        ({"a": "x" * 11}, {"max_string_chars": 10}, "$[0].properties.a", "longer than 10"),
        ({"a": ["ok", "x" * 11]}, {"max_string_chars": 10}, "$[0].properties.a[1]", "longer"),
        ({"k" * 11: 1}, {"max_string_chars": 10}, "$[0].properties", "key is longer"),
        ({"a": "x" * 100}, {"max_properties_bytes": 50}, "$[0].properties", "bytes"),
    ],
)
def test_property_limits(
    props: dict[str, Any], cfg: dict[str, Any], path: str, expected: str
) -> None:
    found = problems_of(enc([ev(properties=props)]), **cfg)
    assert list(found) == [path]
    assert expected in found[path]


def test_deeply_nested_properties_do_not_crash() -> None:
    body = b'[{"type":"view","user_id":"u","item_id":"i","properties":{"a":' + b"[" * 50_000
    body += b"]" * 50_000 + b"}}]"
    found = problems_of(body)
    assert found  # reported as a 422, whichever way the depth is caught


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_property_is_rejected(value: float) -> None:
    # JSON cannot carry NaN, but events built in code (imports, tests) can.
    event = Event(type=EventType.VIEW, user_id="u", item_id="i", properties={"x": [value]})
    [problem] = check_events([event], CFG)
    assert problem.path == "$[0].properties.x[0]"
    assert "NaN" in problem.problem


def test_check_events_accepts_now() -> None:
    event = Event(type=EventType.VIEW, user_id="u", item_id="i", timestamp=1000.0)
    assert check_events([event], CFG, now_ms=1_000_000) == []
    [problem] = check_events([event], CFG, now_ms=10**13)
    assert problem.path == "$[0].timestamp"


# -- fast and slow path agree ----------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
_values = st.recursive(
    _scalars | st.text(max_size=5) | st.sampled_from(["view", "search"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
_fields = st.sampled_from(
    ["type", "event_id", "timestamp", "user_id", "cookie_id", "item_id", "item_ids", "query",
     "properties", "ip", "extra"]
)  # fmt: skip


def _decode_or_error(body: bytes) -> list[Event] | ValidationError:
    try:
        return decode_events(body, JSON, CFG, SERVER)
    except ValidationError as exc:
        return exc


@settings(max_examples=150, deadline=None)
@given(st.lists(st.dictionaries(_fields, _values), max_size=4))
def test_any_json_is_accepted_or_a_422(events: list[dict[str, Any]]) -> None:
    outcome = _decode_or_error(enc(events))
    if isinstance(outcome, ValidationError):
        assert outcome.status in (413, 422)
        assert outcome.problems
    else:
        assert len(outcome) == len(events)
