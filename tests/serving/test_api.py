"""Every route over a real app and a real FileLog: statuses, bodies, and the log after."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from hotshelf.config import Config, LogConfig, StreamConfig
from hotshelf.events import decode_stored_event
from hotshelf.log import FileLog
from tests.serving.api import JSON, NDJSON, Api, make_config, ndjson, view

# -- POST /v1/events -------------------------------------------------------------------


def test_ingest_ndjson(api: Api) -> None:
    response = api.post_events([view(i) for i in range(5)])
    assert response.status_code == 200
    assert response.json() == {"accepted": 5, "duplicates": 0, "first_offset": 0, "last_offset": 4}
    assert api.end_offset == 5


@pytest.mark.parametrize("one", [True, False])
def test_ingest_json(api: Api, one: bool) -> None:
    body = view(1) if one else [view(1), view(2)]
    response = api.client.post("/v1/events", content=msgspec.json.encode(body), headers=JSON)
    assert response.status_code == 200
    assert response.json()["accepted"] == (1 if one else 2)


def test_stored_records_are_normalised(api: Api, tmp_path: Path) -> None:
    ts = time.time() - 10
    event = view(7, ip="198.51.100.4", timestamp=ts, properties={"pos": 3})
    del event["event_id"]
    assert api.post_events([event]).status_code == 200
    log = api.app.service.events_log
    assert log is not None
    [record] = log.read(0)
    stored = decode_stored_event(record.value)
    assert len(stored.event_id) == 32
    assert stored.ts_ms == round(ts * 1000)
    assert stored.ip_hash is not None
    assert b"198.51.100.4" not in record.value
    assert stored.properties == {"pos": 3}


def test_duplicates_are_acknowledged_not_stored(api: Api) -> None:
    assert api.post_events([view(1), view(2)]).json()["accepted"] == 2
    response = api.post_events([view(2), view(3), view(3)])
    assert response.json() == {"accepted": 1, "duplicates": 2, "first_offset": 2, "last_offset": 2}
    again = api.post_events([view(1), view(2)])
    assert again.json() == {
        "accepted": 0,
        "duplicates": 2,
        "first_offset": None,
        "last_offset": None,
    }
    assert api.end_offset == 3


def test_duplicates_are_caught_after_a_restart(start_api: Callable[..., Api]) -> None:
    first = start_api()
    assert first.post_events([view(1), view(2)]).status_code == 200
    first.close()  # a clean stop; the crash test covers SIGKILL
    second = start_api()
    assert second.post_events([view(1), view(2), view(3)]).json()["duplicates"] == 2
    assert second.end_offset == 3


def test_all_or_nothing(api: Api) -> None:
    events = [view(i) for i in range(10)]
    events[7]["timestamp"] = "not a time"
    events[3]["item_id"] = None
    response = api.post_events(events)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert {p["path"] for p in body["problems"]} == {"$[7].timestamp", "$[3].item_id"}
    assert api.end_offset == 0
    assert api.post_events([view(0)]).json()["accepted"] == 1  # ids were not reserved


@pytest.mark.parametrize(
    ("content", "headers", "status", "error"),
    [
        (b'{"type": "view"', JSON, 422, "validation_error"),
        (b"\xff\xfe\x00", JSON, 422, "validation_error"),
        (b"[]", JSON, 422, "validation_error"),
        (ndjson([view()]), {"content-type": "text/plain"}, 415, "unsupported_media_type"),
        (ndjson([view()]), {}, 415, "unsupported_media_type"),
    ],
)
def test_bad_requests(
    api: Api, content: bytes, headers: dict[str, str], status: int, error: str
) -> None:
    response = api.client.post("/v1/events", content=content, headers=headers)
    assert response.status_code == status
    body = response.json()
    assert body["error"] == error
    assert body["message"]
    assert "Traceback" not in response.text
    assert api.end_offset == 0


def test_size_limits(start_api: Callable[..., Api]) -> None:
    api = start_api("server.max_body_bytes=2000", "server.max_events_per_request=3")
    too_many = api.post_events([view(i) for i in range(4)])
    assert too_many.status_code == 413
    assert "limit is 3" in too_many.json()["message"]
    big = api.post_events([view(i, properties={"x": "y" * 900}) for i in range(3)])
    assert big.status_code == 413
    assert api.end_offset == 0


def test_body_limit_without_content_length(start_api: Callable[..., Api]) -> None:
    api = start_api("server.max_body_bytes=100")

    def chunks() -> object:
        for _ in range(10):
            yield b"x" * 50

    response = api.client.post("/v1/events", content=chunks(), headers=NDJSON)  # type: ignore[arg-type]
    assert response.status_code == 413


# -- items -----------------------------------------------------------------------------


def test_items_round_trip(api: Api) -> None:
    one = {"item_id": "sku-1", "title": "Kettle", "price": 25.0, "category": ["Home"]}
    many = [{"item_id": "sku-2", "title": "Mug"}, {"item_id": "sku/3", "title": "Plate"}]
    r1 = api.client.post("/v1/items", content=msgspec.json.encode(one), headers=JSON)
    r2 = api.client.post("/v1/items", content=msgspec.json.encode(many), headers=JSON)
    assert r1.json() == {"accepted": 1, "first_offset": 0, "last_offset": 0}
    assert r2.json() == {"accepted": 2, "first_offset": 1, "last_offset": 2}
    got = api.client.get("/v1/items/sku-1")
    assert got.status_code == 200
    assert got.json()["title"] == "Kettle"
    assert got.json()["price"] == 25.0
    assert api.client.get("/v1/items/sku/3").json()["title"] == "Plate"


def test_unknown_item(api: Api) -> None:
    response = api.client.get("/v1/items/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize(
    ("content", "headers", "status", "path"),
    [
        (b'{"item_id": "a"}', JSON, 422, "$"),
        (
            b'[{"item_id": "a", "title": "t"}, {"item_id": "b", "title": 5}]',
            JSON,
            422,
            "$[1].title",
        ),
        (b'{"item_id": "a", "title": "t", "price": -1}', JSON, 422, "$.price"),
        (b"{", JSON, 422, "$"),
        (b"[]", JSON, 422, None),
        (b'{"item_id": "a", "title": "t"}', NDJSON, 415, None),
    ],
)
def test_bad_items(
    api: Api, content: bytes, headers: dict[str, str], status: int, path: str | None
) -> None:
    response = api.client.post("/v1/items", content=content, headers=headers)
    assert response.status_code == status
    if path is not None:
        assert response.json()["problems"][0]["path"] == path


# -- health, metrics, OpenAPI, errors --------------------------------------------------


def test_healthz_and_readyz(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert body["checks"] == {
        "events_log": "ok", "catalog": "ok", "stream": "ok", "embeddings": "off",
        "recommend": "off",
    }
    assert {"events", "catalog"} <= set(body["stream_lag"])  # and the batch lane's topics
    assert not any(body["stream_lag"].values())
    assert body["damage"] == []


def test_not_ready_before_startup(start_api: Callable[..., Api]) -> None:
    api = start_api(lifespan=False)  # the logs never open
    ready = api.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["events_log"] == "not open"
    assert api.post_events([view()]).status_code == 503
    assert api.client.get("/v1/items/x").status_code == 503
    assert api.client.get("/healthz").status_code == 200


def test_readyz_reports_damage_found_at_recovery(
    start_api: Callable[..., Api], tmp_path: Path
) -> None:
    config = make_config(tmp_path)
    directory = config.data_path / "log" / "events"
    with FileLog(directory, LogConfig(fsync=False)) as log:
        log.append([b"a" * 100] * 3)
        log.append([b"b" * 100] * 3)
    [segment] = directory.rglob("*.log")
    data = bytearray(segment.read_bytes())
    data[data.index(b"a" * 100) + 10] ^= 0xFF  # damage the first batch, keep the second
    segment.write_bytes(bytes(data))
    api = start_api()
    body = api.client.get("/readyz").json()
    assert body["damage"], body
    assert body["damage"][0]["topic"] == "events"
    assert body["damage"][0]["first_offset"] == 0


def test_metrics(api: Api) -> None:
    api.post_events([view(1), view(2)])
    api.post_events([view(2)])
    api.post_events([view(3, timestamp="bad")])
    api.client.get("/nope")
    text = api.client.get("/metrics").text
    for series in (
        'hotshelf_http_requests_total{method="POST",route="/v1/events",status="200"} 2.0',
        'hotshelf_http_requests_total{method="POST",route="/v1/events",status="422"} 1.0',
        'hotshelf_http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0',
        "hotshelf_http_request_duration_seconds_bucket{",
        "hotshelf_events_accepted_total 2.0",
        "hotshelf_events_duplicate_total 1.0",
        'hotshelf_event_requests_rejected_total{reason="validation_error"} 1.0',
        'hotshelf_log_append_duration_seconds_count{topic="events"} 1.0',
        'hotshelf_log_sync_batches_count{topic="events"} 1.0',
        'hotshelf_log_sync_records_sum{topic="events"} 2.0',
        'hotshelf_log_end_offset{topic="events"} 2.0',
        'hotshelf_log_size_bytes{topic="events"}',
        "process_cpu_seconds_total",
    ):
        assert series in text, series


def test_openapi(api: Api) -> None:
    response = api.client.get("/openapi.json")
    assert response.status_code == 200
    doc = json.loads(response.content)
    assert doc["openapi"] == "3.1.0"
    for template, methods in api.app.router.templates():
        for method in methods:
            assert method.lower() in doc["paths"][template], (template, method)
    assert {"Event", "Item", "EventsAccepted", "ErrorBody", "Readiness"} <= set(
        doc["components"]["schemas"]
    )
    refs = {m["$ref"] for m in _find(doc, "$ref")}
    assert all(
        r.removeprefix("#/components/schemas/") in doc["components"]["schemas"] for r in refs
    )


def _find(node: object, key: str) -> list[dict[str, str]]:
    if isinstance(node, dict):
        found = [node] if key in node else []
        return found + [x for v in node.values() for x in _find(v, key)]
    if isinstance(node, list):
        return [x for v in node for x in _find(v, key)]
    return []


def test_unknown_route_and_wrong_method(api: Api) -> None:
    missing = api.client.get("/v2/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = api.client.get("/v1/events")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert wrong.json()["error"] == "method_not_allowed"
    assert api.client.delete("/v1/items/x").status_code == 405


def test_unexpected_error_is_a_bare_500(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(item_id: str) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(api.app.service, "get_item", boom)
    response = api.client.get("/v1/items/x")
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "message": "internal error"}


def test_failed_startup_releases_the_logs(start_api: Callable[..., Api], tmp_path: Path) -> None:
    config = make_config(tmp_path)
    # the catalog log is locked by someone else: startup fails
    with (
        FileLog(config.data_path / "log" / "catalog", LogConfig(fsync=False)),
        pytest.raises(RuntimeError, match="did not start"),
    ):
        start_api()
    # ... and the events log it had already opened was closed again
    with FileLog(config.data_path / "log" / "events", LogConfig(fsync=False)) as log:
        assert log.end_offset == 0
    assert start_api().client.get("/readyz").status_code == 200


def test_service_retention_trims_events_but_never_the_catalog(tmp_path: Path) -> None:
    from hotshelf.serving import Service

    cfg = Config(
        data_dir=str(tmp_path),
        log=LogConfig(retention_hours=None, retention_bytes=1, segment_max_bytes=512),
        stream=StreamConfig(serve=False),  # the records below are not events
    )
    service = Service(cfg)
    service.start()
    try:
        assert service.events_log is not None
        assert service.catalog_log is not None
        for i in range(20):
            service.events_log.append([b"e%03d" % i * 40])
            service.catalog_log.append([b"c%03d" % i * 40])
        assert service.apply_retention() > 0
        assert service.events_log.start_offset > 0
        assert service.catalog_log.start_offset == 0
    finally:
        service.close()
    assert service.apply_retention() == 0  # closed: nothing to do, no error
