"""Just enough HTTP on top of ASGI: a request that reads its body under a limit, JSON
responses, and a router with exact paths and one-parameter prefixes.

Why not Starlette: measured with ``benchmarks/bench_server.py``, the same service
behind Starlette answered about half the requests/s of this bare app on one-event
requests (per-request overhead), and no more events/s on 100-event batches. The
routing this API needs is a dict lookup.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from hotshelf.errors import PayloadTooLargeError

__all__ = [
    "ClientDisconnectError",
    "Handler",
    "Receive",
    "Request",
    "Response",
    "Router",
    "Scope",
    "Send",
    "json_response",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_encoder = msgspec.json.Encoder()
JSON = b"application/json"


class ClientDisconnectError(Exception):
    """The client went away before its request body arrived; nothing to answer."""


class Request:
    """One HTTP request: method, path, headers on demand, and the body under a limit."""

    __slots__ = ("_receive", "method", "path", "path_params", "scope")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self._receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.path_params: dict[str, str] = {}

    def header(self, name: bytes) -> str | None:
        """The first value of header ``name`` (lower-case bytes), decoded as latin-1."""
        for key, value in self.scope["headers"]:
            if key == name:
                return bytes(value).decode("latin-1")
        return None

    async def body(self, limit: int) -> bytes:
        """The whole body; ``PayloadTooLargeError`` past ``limit`` bytes (checked early)."""
        declared = self.header(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLargeError(f"request body is {declared} bytes; the limit is {limit}")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnectError
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLargeError(f"request body is over the {limit} byte limit")
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class Response:
    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: bytes = JSON,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers

    async def send(self, send: Send) -> None:
        headers = [
            (b"content-type", self.content_type),
            (b"content-length", b"%d" % len(self.body)),
        ]
        if self.headers:
            headers += self.headers
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, _encoder.encode(value))


Handler = Callable[[Request], Awaitable[Response]]


class Router:
    """Exact paths, plus prefixes whose remainder is one path parameter.

    ``add("/v1/items/{item_id}", ...)`` matches ``/v1/items/<anything non-empty>``.
    """

    def __init__(self) -> None:
        self._exact: dict[str, tuple[str, dict[str, Handler]]] = {}
        self._prefixes: list[tuple[str, str, str, dict[str, Handler]]] = []

    def add(self, template: str, method: str, handler: Handler) -> None:
        if template.endswith("}"):
            prefix, _, param = template[:-1].rpartition("{")
            for known_prefix, _, _, methods in self._prefixes:
                if known_prefix == prefix:
                    methods[method] = handler
                    return
            self._prefixes.append((prefix, template, param, {method: handler}))
        else:
            self._exact.setdefault(template, (template, {}))[1][method] = handler

    def match(self, path: str) -> tuple[str, dict[str, Handler], dict[str, str]] | None:
        """(route template, handlers by method, path parameters), or None."""
        found = self._exact.get(path)
        if found is not None:
            return found[0], found[1], {}
        for prefix, template, param, methods in self._prefixes:
            if path.startswith(prefix) and len(path) > len(prefix):
                return template, methods, {param: path[len(prefix) :]}
        return None

    def templates(self) -> list[tuple[str, list[str]]]:
        """Every route and its methods, for the OpenAPI document."""
        out = [(t, sorted(m)) for t, m in self._exact.values()]
        out += [(t, sorted(m)) for _, t, _, m in self._prefixes]
        return out
