"""Recommend replicas (``recommend.replicas``): processes that answer ``/v1/recommend``
for the server from its logs.

The wire's frames survive any split of the byte stream; the server's read-your-writes
bookkeeping makes a request wait for exactly the visitor's last events; a replica
answers what the server itself would; a killed replica costs no request and is
started again; replicas stop with the server. The routing, filter, freshness and
attribution tests of ``test_recommend_api`` run against a replica too.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotshelf.config import load_config
from hotshelf.events import EventType, StoredEvent
from hotshelf.monitoring import Metrics
from hotshelf.serving import create_app
from hotshelf.serving._recommend import decode_request
from hotshelf.serving._replica import FrameReader, encode_frame
from hotshelf.serving._replicas import ReplicaPool
from tests.serving.api import Api, make_config, ndjson
from tests.serving.test_recommend_api import (
    NDJSON_TYPE,
    answered_by,
    catalog,
    shopper_events,
    wait_for,
)

# -- the wire ---------------------------------------------------------------------------

frames = st.lists(
    st.tuples(st.integers(0, 2**40), st.integers(0, 2**40), st.binary(max_size=300)),
    max_size=8,
)


@given(sent=frames, cuts=st.lists(st.integers(0, 4000), max_size=10))
def test_frames_come_out_whole_however_the_stream_is_cut(
    sent: list[tuple[int, int, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(encode_frame(list(frame)) for frame in sent)
    points = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    reader = FrameReader()
    got = []
    for start, end in itertools.pairwise(points):
        got.extend(reader.feed(stream[start:end]))
    assert [tuple(frame) for frame in got] == sent


def test_a_frame_longer_than_any_side_sends_is_refused() -> None:
    with pytest.raises(ValueError, match="a frame of"):
        list(FrameReader().feed(b"\xff\xff\xff\xff" + b"x" * 10))


# -- read-your-writes bookkeeping -------------------------------------------------------


@pytest.fixture
def pool(tmp_path: Path) -> ReplicaPool:
    config = load_config(overrides=[f'data_dir="{tmp_path}"', "recommend.replicas=1"], environ={})
    return ReplicaPool(config, Metrics(process=False), lambda: 0)  # not started


def event(**ids: str) -> StoredEvent:
    return StoredEvent(event_id="e", type=EventType.VIEW, ts_ms=1, received_ms=1, **ids)


def need(pool: ReplicaPool, **context: str) -> int:
    return pool._need(decode_request(msgspec.json.encode({"cookie_id": "anon", **context})))


def test_a_request_waits_for_its_own_visitors_last_events_only(pool: ReplicaPool) -> None:
    pool.note_appended([event(user_id="u1", cookie_id="c1")], 10)
    pool.note_appended([event(cookie_id="c2", session_id="s2")], 12)
    pool.note_appended([event(user_id="u1", cookie_id="c3")], 15)
    assert need(pool) == 0
    assert need(pool, cookie_id="c1") == 10
    assert need(pool, cookie_id="c1", user_id="u1") == 15  # u1's later events
    assert need(pool, cookie_id="x", session_id="s2") == 12
    link = pool.links[0]
    link.ready, link.applied = True, 12
    pool.ready_changed()
    pool.forget_applied()
    assert need(pool, cookie_id="c1") == 0  # applied everywhere: forgotten
    assert need(pool, cookie_id="c3") == 15


def test_past_its_memory_a_request_waits_for_the_oldest_end_forgotten(
    pool: ReplicaPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hotshelf.serving._replicas._MAX_REMEMBERED", 3)
    for n in range(5):
        pool.note_appended([event(cookie_id=f"c{n}")], 10 + n)
    assert len(pool._ends) == 3
    assert need(pool, cookie_id="someone-else") == 11  # c0 and c1 forgotten: the floor
    assert need(pool, cookie_id="c4") == 14


# -- replicas at work -------------------------------------------------------------------


def _server(tmp_path: Path, *overrides: str) -> Api:
    config = make_config(
        tmp_path, "recommend.serve=true", "recommend.replicas=1", "recommend.cf.retrain_s=0",
        "recommend.cf.factors=8", "recommend.cf.iterations=5", *overrides,
    )  # fmt: skip
    server = Api(create_app(config))
    assert server.client.post("/v1/items", json=catalog()).is_success
    events = ndjson(shopper_events(int(time.time() * 1000)))
    assert server.client.post("/v1/events", content=events, headers=NDJSON_TYPE).is_success
    return server


def _replica_pid(server: Api) -> int:
    pool = server.app.service.replicas
    assert pool is not None
    process = pool.links[0].process
    assert process is not None
    return process.pid


def _ready(server: Api) -> bool:
    pool = server.app.service.replicas
    return pool is not None and pool.ready == 1


CONTEXTS: list[dict[str, Any]] = [
    {"cookie_id": "new", "location": "Berlin", "device": "mobile"},
    {"cookie_id": "c0", "user_id": "u0"},
    {"cookie_id": "c4", "user_id": "u4", "session_id": "s4"},
    {"cookie_id": "c7", "session_id": "s7", "current_item_id": "tops-3", "k": 7},
    {"cookie_id": "f", "filters": {"exclude_categories": ["Fruit"], "max_price": 30}},
]


def test_a_replica_answers_what_the_server_itself_would(tmp_path: Path) -> None:
    server = _server(tmp_path)
    try:
        wait_for(lambda: _ready(server), 60)
        runner = server.app.service.recommend_runner
        assert runner is not None
        before = answered_by(server)
        for context in CONTEXTS:
            body = msgspec.json.encode({**context, "variant": "control"})
            sent = server.client.post("/v1/recommend", content=body,
                                      headers={"content-type": "application/json"})  # fmt: skip
            assert sent.status_code == 200, sent.text
            own = runner.recommend(decode_request(body))
            got = sent.json()
            assert [(i["item_id"], i["route"], i["reason"]) for i in got["items"]] == [
                (i.item_id, i.route, i.reason) for i in own.items
            ], context
            assert [i["score"] for i in got["items"]] == pytest.approx(
                [i.score for i in own.items], rel=1e-3
            )
            assert got["routes"] == own.routes
        after = answered_by(server)
        assert after["replica"] == before["replica"] + len(CONTEXTS)
        assert after["fallback"] == before["fallback"]
        # an error the request itself holds comes back from the replica as it is
        missing = server.client.post(
            "/v1/recommend", json={"cookie_id": "a", "current_item_id": "x"}
        )
        assert missing.status_code == 404
        assert "'x'" in missing.json()["message"]
        assert answered_by(server)["replica"] == after["replica"] + 1
    finally:
        server.close()


def test_an_item_added_a_moment_ago_is_known_to_the_replica(tmp_path: Path) -> None:
    server = _server(tmp_path)
    try:
        wait_for(lambda: _ready(server), 60)
        for n in range(5):
            item = {"item_id": f"new-{n}", "title": "Brand new thing", "category": ["Tools"],
                    "price": 9.0}  # fmt: skip
            assert server.client.post("/v1/items", json=item).is_success
            answer = server.client.post(
                "/v1/recommend", json={"cookie_id": "a", "current_item_id": f"new-{n}"}
            )
            assert answer.status_code == 200, answer.text
        assert answered_by(server)["fallback"] == 0
    finally:
        server.close()


def test_a_killed_replica_costs_no_request_and_is_started_again(tmp_path: Path) -> None:
    server = _server(tmp_path)
    try:
        wait_for(lambda: _ready(server), 60)
        first = _replica_pid(server)
        os.kill(first, signal.SIGKILL)
        for n in range(50):  # before, during and after the restart: every one answered
            answer = server.client.post("/v1/recommend", json={"cookie_id": f"k{n}"})
            assert answer.status_code == 200, answer.text
        wait_for(lambda: _ready(server) and _replica_pid(server) != first, 60)
        before = answered_by(server)["replica"]
        assert server.client.post("/v1/recommend", json={"cookie_id": "again"}).status_code == 200
        assert answered_by(server)["replica"] == before + 1
        second = _replica_pid(server)
    finally:
        server.close()
    with pytest.raises(ProcessLookupError):  # stopped with the server
        os.kill(second, 0)


def test_a_replica_serves_each_model_the_server_saves(tmp_path: Path) -> None:
    server = _server(tmp_path)  # recommend.cf.retrain_s=0: no model until one is trained
    try:
        wait_for(lambda: _ready(server), 60)
        known = {"cookie_id": "c2", "user_id": "u2"}
        assert server.client.post("/v1/recommend", json=known).json()["model_version"] is None
        runner = server.app.service.recommend_runner
        assert runner is not None
        assert runner.retrain()  # trained and saved by the server
        model = runner.recommender.model
        assert model is not None

        def served() -> dict[str, Any] | None:
            answer: dict[str, Any] = server.client.post("/v1/recommend", json=known).json()
            return answer if answer["model_version"] == model.version else None

        before = answered_by(server)["replica"]
        answer = wait_for(served, 30)
        assert "personal" in answer["routes"]
        assert answered_by(server)["replica"] > before
        assert answered_by(server)["fallback"] == 0
    finally:
        server.close()
