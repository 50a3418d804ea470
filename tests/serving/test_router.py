"""The router: exact paths, and one-parameter templates whose value may hold slashes."""

from __future__ import annotations

import pytest

from hotshelf.serving._http import Request, Response, Router


async def _handler(request: Request) -> Response:
    return Response(200, b"")


def _router() -> Router:
    router = Router()
    for template in ("/v1/events", "/v1/items/{item_id}", "/v1/items/{item_id}/related"):
        router.add(template, "GET", _handler)
    return router


@pytest.mark.parametrize(
    ("path", "template", "params"),
    [
        ("/v1/events", "/v1/events", {}),
        ("/v1/items/sku-1", "/v1/items/{item_id}", {"item_id": "sku-1"}),
        ("/v1/items/sku/3", "/v1/items/{item_id}", {"item_id": "sku/3"}),
        ("/v1/items/sku-1/related", "/v1/items/{item_id}/related", {"item_id": "sku-1"}),
        ("/v1/items/a/b/related", "/v1/items/{item_id}/related", {"item_id": "a/b"}),
    ],
)
def test_matches(path: str, template: str, params: dict[str, str]) -> None:
    found = _router().match(path)
    assert found is not None
    assert found[0] == template
    assert found[2] == params


@pytest.mark.parametrize("path", ["/v1/items", "/v1/items/", "/v2/items/x", "/", "/v1/event"])
def test_no_match(path: str) -> None:
    assert _router().match(path) is None


def test_a_template_needs_exactly_one_parameter() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Router().add("/v1/{a}/{b}", "GET", _handler)
