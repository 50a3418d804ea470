"""Fuzzing POST /v1/events over real HTTP: never a 5xx, and a rejection changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotshelf.serving import create_app
from tests.serving.api import Api, make_config

pytestmark = pytest.mark.slow

MAX_BODY = 8192
FIELDS = ["type", "event_id", "timestamp", "user_id", "cookie_id", "session_id", "item_id",
          "item_ids", "query", "location", "device", "user_agent", "ip", "properties"]  # fmt: skip
TYPES = ["view", "click", "add_to_cart", "purchase", "impression", "search"]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data = tmp_path_factory.mktemp("fuzz")
    config = make_config(
        data, f"server.max_body_bytes={MAX_BODY}", "server.max_events_per_request=20"
    )
    server = Api(create_app(config))
    yield server
    server.close()


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)

nested = st.integers(1, 3000).map(
    lambda n: {"deep": json.loads("[" * min(n, 900) + "]" * min(n, 900))}
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly-plausible events with a few fields wrong in random ways."""
    event: dict[str, Any] = {"type": draw(st.sampled_from(TYPES)), "user_id": "u"}
    for name in draw(st.lists(st.sampled_from([*FIELDS, "junk"]), max_size=6)):
        event[name] = draw(
            json_values
            | st.sampled_from(TYPES)
            | st.text(min_size=0, max_size=2000)
            | st.lists(st.text(max_size=3), max_size=1200)
            | st.floats(1e9, 3e9)
            | nested
        )
    return event


def encode_body(value: Any, style: str) -> bytes:
    if style == "ndjson" and isinstance(value, list):
        return b"\n".join(msgspec.json.encode(v) for v in value)
    return msgspec.json.encode(value)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["events", "json", "bytes", "literals", "utf8", "huge"]))
    if kind == "events":
        body = encode_body(
            draw(st.lists(events(), max_size=25)), draw(st.sampled_from(["ndjson", "json"]))
        )
    elif kind == "json":
        body = msgspec.json.encode(draw(json_values))
    elif kind == "bytes":
        body = draw(st.binary(max_size=300))
    elif kind == "literals":  # what msgspec must refuse: NaN, Infinity, 1e999, comments
        literal = draw(
            st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "/**/1"])
        )
        body = (
            b'[{"type":"view","user_id":"u","item_id":"i","timestamp":%s,"properties":{"x":%s}}]'
            % (literal.encode(), literal.encode())
        )
    elif kind == "utf8":
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]))
        body = b'{"type":"view","user_id":"' + bad + b'","item_id":"i"}'
    else:
        body = b"[" + b",".join([b'{"type":"view","user_id":"u","item_id":"i"}'] * 300) + b"]"
    return body


content_types = st.sampled_from(
    [
        "application/json",
        "application/x-ndjson",
        "application/ndjson",
        "application/json; charset=utf-8",
    ]
) | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(
    str.strip
)  # the client refuses header values with outer whitespace


def post(api: Api, body: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
    before = api.end_offset
    response = api.client.post("/v1/events", content=body, headers={"content-type": content_type})
    assert response.status_code < 500, response.text
    payload = response.json()
    if response.status_code != 200:
        assert api.end_offset == before, "a rejected request changed the log"
        assert payload["error"]
        assert payload["message"]
        assert "Traceback" not in response.text
    else:
        assert api.end_offset == before + payload["accepted"]
    return response.status_code, payload


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(body=bodies(), content_type=content_types)
def test_fuzz_events(api: Api, body: bytes, content_type: str) -> None:
    post(api, body, content_type)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(events(), min_size=1, max_size=10), bad=st.data())
def test_one_bad_event_rejects_the_batch(
    api: Api, batch: list[dict[str, Any]], bad: st.DataObject
) -> None:
    # A valid batch with exactly one event broken: nothing of it may be stored.
    valid = [{"type": "view", "user_id": "u", "item_id": f"i{k}"} for k in range(len(batch))]
    index = bad.draw(st.integers(0, len(valid) - 1))
    valid[index]["timestamp"] = bad.draw(st.sampled_from(["soon", True, [], {"a": 1}, -1e12]))
    status, payload = post(api, encode_body(valid, "ndjson"), "application/x-ndjson")
    assert status == 422
    assert any(p["path"].startswith(f"$[{index}]") for p in payload["problems"])


def test_oversized_declared_length_is_refused_early(api: Api) -> None:
    status, payload = post(api, b"x" * (MAX_BODY + 1), "application/json")
    assert status == 413
    assert payload["error"] == "payload_too_large"


def test_fuzz_leaves_a_clean_log(api: Api, tmp_path: Path) -> None:
    log = api.app.service.events_log
    assert log is not None
    assert log.verify().ok


items = st.dictionaries(
    st.sampled_from(["item_id", "title", "price", "category", "availability", "attributes", "x"]),
    json_values | st.text(max_size=600) | st.floats(-1e10, 1e10),
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.one_of(items, st.lists(items, max_size=5), json_values).map(msgspec.json.encode))
def test_fuzz_items(api: Api, body: bytes) -> None:
    response = api.client.post(
        "/v1/items", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code in (200, 413, 422), response.text


paths = st.sampled_from(
    ["/v1/events", "/v1/items", "/v1/items/", "/v1/items/a%2Fb", "/readyz", "/x", "/metrics"]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    # Only methods httptools knows: it answers others itself, with a plain-text 400.
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]),
    # not "//...": httpx takes that for a host (a client error; the server never sees it)
    path=paths | st.text(alphabet="abc/.-_~", max_size=30).map(lambda p: "/" + p.lstrip("/")),
)
def test_fuzz_routes(api: Api, method: str, path: str) -> None:
    response = api.client.request(
        method, path, content=b"{}", headers={"content-type": "application/json"}
    )
    assert response.status_code < 500, response.text
    if path == "/metrics" and response.status_code == 200:
        return  # Prometheus text, not JSON
    body = response.json()
    if response.status_code >= 400:
        assert body["error"]
        assert body["message"]
