"""Simulated store traffic sent through the real API, and waiting for the stream state."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from hotshelf.simulation import SimConfig, StoreSimulator
from tests.serving.api import JSON, NDJSON, Api

BATCH = 500
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"


def simulator(n_events: int, seed: int = 3) -> StoreSimulator:
    """A store whose ``n_events`` events (500/s) all lie in the last minutes."""
    span_ms = n_events * 2 + 60_000
    return StoreSimulator(SimConfig(seed=seed, start_ms=int(time.time() * 1000) - span_ms))


def post_catalog(api: Api, sim: StoreSimulator) -> None:
    items = sim.catalog()
    for i in range(0, len(items), BATCH):
        body = msgspec.json.encode(items[i : i + BATCH])
        assert api.client.post("/v1/items", content=body, headers=JSON).status_code == 200


def post_events(api: Api, sim: StoreSimulator, n_events: int) -> int:
    """Post the simulator's first ``n_events`` events as NDJSON; the events log's end."""
    events = [msgspec.json.encode(e.event) for e in sim.events(n_events)]
    for i in range(0, len(events), BATCH):
        body = b"\n".join(events[i : i + BATCH])
        response = api.client.post("/v1/events", content=body, headers=NDJSON)
        assert response.status_code == 200, response.text
    return api.end_offset


def wait_caught_up(api: Api, timeout_s: float = 60.0) -> dict[str, Any]:
    """Poll ``/readyz`` until the stream state reflects every record; its body."""
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = api.client.get("/readyz").json()
        lag = body.get("stream_lag") or {}
        if lag and not any(lag.values()):
            return body
        assert time.monotonic() < deadline, f"stream still behind after {timeout_s} s: {lag}"
        time.sleep(0.02)


def surge(item_id: str, visitors: int, location: str, device: str) -> list[dict[str, Any]]:
    """One view of ``item_id`` by each of ``visitors`` distinct people (cookie and IP)."""
    return [
        {
            "type": "view",
            "event_id": f"surge-{item_id}-{i}",
            "cookie_id": f"surge-c{i}",
            "item_id": item_id,
            "location": location,
            "device": device,
            "user_agent": BROWSER,
            "ip": f"203.0.113.{i % 250 + 1}",
        }
        for i in range(visitors)
    ]
