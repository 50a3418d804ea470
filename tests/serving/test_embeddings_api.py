"""The embedding endpoints over real HTTP: vectors, similar items, search, rank, the
catalog followed as it changes, and a clear 4xx for every kind of bad input."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from hotshelf.serving import create_app
from tests.serving.api import JSON, Api, make_config

CATALOG = [
    ("drill-1", "Cordless Drill Driver 18V", ["Tools", "Power Tools"]),
    ("drill-2", "Brushless Hammer Drill, 20V Battery", ["Tools", "Power Tools"]),
    ("saw-1", "Circular Saw 7-1/4 inch", ["Tools", "Power Tools"]),
    ("banana-1", "Organic Bananas, Bunch", ["Grocery", "Fruit"]),
    ("apple-1", "Gala Apples, 3 lb Bag", ["Grocery", "Fruit"]),
    ("tee-1", "Men's Cotton T-Shirt, Navy", ["Clothing", "Tops"]),
    ("tee-2", "Women's V-Neck Tee, White", ["Clothing", "Tops"]),
    ("pan/1", "Nonstick Frying Pan 10 inch", ["Kitchen", "Cookware"]),
]
MAX_IDS = 5


def wait_embedded(api: Api, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        ready = api.client.get("/readyz").json()
        if ready["checks"].get("embeddings") == "ok" and ready.get("embeddings_lag") == 0:
            return ready  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, ready
        time.sleep(0.05)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    config = make_config(
        tmp_path_factory.mktemp("embeddings"), "embeddings.serve=true",
        "embeddings.refresh_s=0.05", f"embeddings.max_ids={MAX_IDS}", "embeddings.max_k=20",
        "embeddings.max_query_chars=200", "embeddings.threads=1",
    )  # fmt: skip
    server = Api(create_app(config))
    try:
        items = [{"item_id": i, "title": t, "category": c} for i, t, c in CATALOG]
        assert server.client.post("/v1/items", json=items).is_success
        wait_embedded(server)
        yield server
    finally:
        server.close()


def ok(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def problem_paths(response: Any, status: int = 422) -> list[str]:
    assert response.status_code == status, response.text
    return [p["path"] for p in response.json().get("problems", [])]


# -- happy paths ------------------------------------------------------------------------


def test_embeddings_as_floats_and_base64_agree(api: Api) -> None:
    ids = ["drill-1", "pan/1", "drill-1"]  # a duplicate is answered once
    floats = ok(api.client.post("/v1/embeddings", json={"item_ids": ids}))
    packed = ok(api.client.post("/v1/embeddings", json={"item_ids": ids, "encoding": "base64"}))
    assert floats["dim"] == 384
    assert floats["model"]
    assert floats["missing"] == []
    assert [i["item_id"] for i in floats["items"]] == ["drill-1", "pan/1"]
    assert floats["degraded"] is False
    for plain, raw in zip(floats["items"], packed["items"], strict=True):
        vector = np.frombuffer(base64.b64decode(raw["embedding"]), dtype="<f4")
        np.testing.assert_allclose(vector, plain["embedding"], rtol=1e-6)
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)


def test_similar_items_are_of_the_same_kind(api: Api) -> None:
    answer = ok(api.client.get("/v1/items/drill-1/similar", params={"k": 3}))
    ids = [s["item_id"] for s in answer["items"]]
    assert "drill-1" not in ids
    assert ids[0] == "drill-2"
    assert set(ids[:2]) <= {"drill-2", "saw-1"}
    scores = [s["score"] for s in answer["items"]]
    assert scores == sorted(scores, reverse=True)
    # a slash in the id routes too
    assert ok(api.client.get("/v1/items/pan%2F1/similar"))["item_id"] == "pan/1"


def test_search_finds_the_product_a_query_means(api: Api) -> None:
    found = ok(api.client.post("/v1/search", json={"query": "cordless power drill", "k": 2}))
    assert {s["item_id"] for s in found["items"]} == {"drill-1", "drill-2"}
    fruit = ok(api.client.post("/v1/search", json={"query": "fresh fruit", "k": 2,
                                                  "exclude": ["banana-1"]}))  # fmt: skip
    assert next(s["item_id"] for s in fruit["items"]) == "apple-1"
    assert "banana-1" not in {s["item_id"] for s in fruit["items"]}


def test_rank_orders_candidates_by_relevance(api: Api) -> None:
    body = {"query": "t-shirt", "item_ids": ["drill-1", "tee-1", "banana-1", "tee-2", "tee-1"]}
    ranked = ok(api.client.post("/v1/rank", json=body))["items"]
    assert [r["item_id"] for r in ranked][:2] in (["tee-1", "tee-2"], ["tee-2", "tee-1"])
    assert len(ranked) == 4
    assert all(r["score"] is not None for r in ranked)


def test_a_new_item_is_searchable_and_an_edit_moves_it(api: Api) -> None:
    item = {"item_id": "kettle-1", "title": "Electric Kettle 1.7 L", "category": ["Kitchen"]}
    assert api.client.post("/v1/items", json=item).is_success
    wait_embedded(api)
    hits = ok(api.client.post("/v1/search", json={"query": "kettle to boil water", "k": 1}))
    assert hits["items"][0]["item_id"] == "kettle-1"
    renamed = {**item, "title": "Garden Hose 50 ft", "category": ["Garden"]}
    assert api.client.post("/v1/items", json=renamed).is_success
    wait_embedded(api)
    hits = ok(api.client.post("/v1/search", json={"query": "kettle to boil water", "k": 1}))
    assert hits["items"][0]["item_id"] != "kettle-1"


def test_readiness_and_metrics_report_the_embeddings(api: Api) -> None:
    ready = ok(api.client.get("/readyz"))
    assert ready["checks"]["embeddings"] == "ok"
    metrics = api.client.get("/metrics").text
    assert "hotshelf_embedding_store_requests_total" in metrics
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
    }
    assert values["hotshelf_embeddings_items"] >= len(CATALOG)  # and kettle-1, if added
    assert values["hotshelf_embeddings_encoded_total"] >= len(CATALOG)
    assert values["hotshelf_embeddings_lag_records"] == 0


# -- bad input ------------------------------------------------------------------------


def test_unknown_ids_are_404_naming_them(api: Api) -> None:
    missing = api.client.post("/v1/embeddings", json={"item_ids": ["drill-1", "nope"]})
    assert missing.status_code == 404
    assert "'nope'" in missing.json()["message"]
    assert api.client.get("/v1/items/nope/similar").status_code == 404
    rank = api.client.post("/v1/rank", json={"query": "drill", "item_ids": ["ghost"]})
    assert rank.status_code == 404
    assert "'ghost'" in rank.json()["message"]


BAD_BODIES: list[tuple[str, Any, str]] = [
    ("/v1/embeddings", {"item_ids": []}, "$.item_ids"),
    ("/v1/embeddings", {"item_ids": [f"i{n}" for n in range(MAX_IDS + 1)]}, "item_ids"),
    ("/v1/embeddings", {"item_ids": ["drill-1"], "encoding": "hex"}, "$.encoding"),
    ("/v1/embeddings", {"ids": ["drill-1"]}, "$"),
    ("/v1/embeddings", {"item_ids": [""]}, "$.item_ids[0]"),
    ("/v1/search", {"query": ""}, "query"),
    ("/v1/search", {"query": "   "}, "query"),
    ("/v1/search", {"query": "x" * 201}, "query"),
    ("/v1/search", {"query": "drill", "k": 0}, "$.k"),
    ("/v1/search", {"query": "drill", "k": 21}, "k"),
    ("/v1/search", {"query": "drill", "k": "many"}, "$.k"),
    ("/v1/search", {"k": 3}, "$"),
    ("/v1/search", [1, 2], "$"),
    ("/v1/rank", {"query": "drill", "item_ids": []}, "$.item_ids"),
    ("/v1/rank", {"query": "", "item_ids": ["drill-1"]}, "query"),
]


@pytest.mark.parametrize(("path", "body", "where"), BAD_BODIES)
def test_bad_bodies_are_422_naming_the_field(api: Api, path: str, body: Any, where: str) -> None:
    assert where in problem_paths(api.client.post(path, json=body))


@pytest.mark.parametrize("params", [{"k": "0"}, {"k": "21"}, {"k": "x"}, {"n": "3"}])
def test_bad_similar_parameters_are_422(api: Api, params: dict[str, str]) -> None:
    paths = problem_paths(api.client.get("/v1/items/drill-1/similar", params=params))
    assert paths == [next(iter(params))]


def test_malformed_json_wrong_type_and_huge_bodies(api: Api) -> None:
    assert problem_paths(api.client.post("/v1/search", content=b"{", headers=JSON)) == ["$"]
    text = api.client.post("/v1/search", content=b'{"query":"x"}',
                           headers={"content-type": "text/plain"})  # fmt: skip
    assert text.status_code == 415
    huge = api.client.post("/v1/search", json={"query": "x" * 2_000_000})
    assert huge.status_code == 413


def test_embeddings_off_is_503(start_api: Callable[..., Api]) -> None:
    api = start_api()  # make_config leaves embeddings off
    answer = api.client.post("/v1/search", json={"query": "drill"})
    assert answer.status_code == 503
    assert "embeddings.serve" in answer.json()["message"]
    assert api.client.get("/readyz").json()["checks"]["embeddings"] == "off"


ids = st.sampled_from([i for i, _, _ in CATALOG] + ["ghost", "", "x" * 200]) | st.text(max_size=8)
fuzzed = st.fixed_dictionaries(
    {},
    optional={
        "query": st.text(max_size=300) | st.integers() | st.none(),
        "item_ids": st.lists(ids, max_size=8) | st.text(max_size=5),
        "k": st.integers(-3, 50) | st.text(max_size=3),
        "exclude": st.lists(ids, max_size=3),
        "encoding": st.sampled_from(["float", "base64", "hex"]),
        "extra": st.booleans(),
    },
)


@settings(max_examples=60, deadline=None)
@given(path=st.sampled_from(["/v1/embeddings", "/v1/search", "/v1/rank"]), body=fuzzed)
def test_fuzzed_bodies_get_an_answer_or_a_clear_4xx(api: Api, path: str, body: Any) -> None:
    response = api.client.post(path, json=body)
    assert response.status_code in (200, 404, 422), response.text
    if response.status_code != 200:
        assert response.json()["message"]
