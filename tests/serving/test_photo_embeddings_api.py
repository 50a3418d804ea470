"""Photos fused with text, end to end over HTTP: items whose titles say nothing apart
find each other by their photos, a text query still ranks by text, an unusable photo
leaves its item searchable and is counted in the metrics."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hotshelf.serving import create_app
from tests.photos import MOTORCYCLE_LEFT, MOTORCYCLE_RIGHT, OTHERS, photo
from tests.serving.api import Api, make_config
from tests.serving.test_embeddings_api import ok, wait_embedded

PHOTOS = [MOTORCYCLE_LEFT, *OTHERS, MOTORCYCLE_RIGHT]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data = tmp_path_factory.mktemp("photo-embeddings")
    root = data / "photos"
    root.mkdir()
    for name in PHOTOS:
        shutil.copy(photo(name), root / name)
    config = make_config(
        data, "embeddings.serve=true", "embeddings.refresh_s=0.05", "embeddings.threads=1",
        "embeddings.image_weight=0.5", f"embeddings.image_root={json.dumps(str(root))}",
    )  # fmt: skip
    server = Api(create_app(config))
    try:
        # one title for all: only the photos tell these items apart
        items: list[dict[str, Any]] = [
            {"item_id": f"p{n}", "title": "Framed print, 30 x 40 cm", "image": name}
            for n, name in enumerate(PHOTOS)
        ]
        items += [
            {"item_id": "drill", "title": "Cordless Drill Driver 18V", "image": "missing.jpg"},
            {"item_id": "saw", "title": "Circular Saw 7-1/4 inch", "category": ["Tools"]},
        ]
        assert server.client.post("/v1/items", json=items).is_success
        wait_embedded(server, timeout_s=120)
        yield server
    finally:
        server.close()


def test_vectors_carry_a_photo_half(api: Api) -> None:
    answer = ok(api.client.post("/v1/embeddings", json={"item_ids": ["p0", "drill"]}))
    assert answer["dim"] == 384 + 256
    assert "efficientnet-lite0" in answer["model"]
    photo_half = [item["embedding"][384:] for item in answer["items"]]
    assert any(photo_half[0])
    assert not any(photo_half[1])


def test_two_photos_of_one_motorcycle_are_each_others_nearest(api: Api) -> None:
    last = f"p{len(PHOTOS) - 1}"
    similar = ok(api.client.get("/v1/items/p0/similar", params={"k": 3}))["items"]
    assert similar[0]["item_id"] == last
    assert ok(api.client.get(f"/v1/items/{last}/similar"))["items"][0]["item_id"] == "p0"


def test_a_text_query_still_ranks_by_text(api: Api) -> None:
    found = ok(api.client.post("/v1/search", json={"query": "power drill", "k": 2}))["items"]
    assert found[0]["item_id"] == "drill"  # its photo was unusable; its text is not
    ranked = ok(api.client.post("/v1/rank", json={"query": "circular saw",
                                                 "item_ids": ["p0", "saw", "p1"]}))  # fmt: skip
    assert ranked["items"][0]["item_id"] == "saw"
    # a query scores the plain text cosine: the prints, with one title, score the same
    scores = {r["item_id"]: r["score"] for r in ranked["items"]}
    assert scores["p0"] == pytest.approx(scores["p1"], abs=1e-5)


def test_an_unusable_photo_is_counted_by_reason(api: Api) -> None:
    metrics = api.client.get("/metrics").text
    counted = {
        sample.labels["reason"]: sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "hotshelf_embeddings_image_problems"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert counted == {"missing": 1.0}
