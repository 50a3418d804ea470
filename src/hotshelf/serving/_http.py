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
from urllib.parse import parse_qsl

import msgspec

from hotshelf.errors import HotshelfError, PayloadTooLargeError

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

    @property
    def query(self) -> dict[str, str]:
        """Query parameters (the last value wins when a name repeats)."""
        raw = self.scope.get("query_string", b"")
        if not raw:
            return {}
        return dict(parse_qsl(bytes(raw).decode("latin-1"), keep_blank_values=True))

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


class _Template:
    """``/prefix/{param}/suffix`` split into its literal segments and the parameter name."""

    __slots__ = ("methods", "param", "prefix", "suffix", "template")

    def __init__(self, template: str, methods: dict[str, Handler]) -> None:
        parts = template.strip("/").split("/")
        params = [i for i, part in enumerate(parts) if part.startswith("{")]
        if len(params) != 1:
            raise ValueError(f"route {template!r} must have exactly one {{parameter}}")
        at = params[0]
        self.template = template
        self.methods = methods
        self.param = parts[at][1:-1]
        self.prefix = parts[:at]
        self.suffix = parts[at + 1 :]

    def match(self, segments: list[str]) -> str | None:
        """The parameter's value if ``segments`` fit this template."""
        fixed = len(self.prefix) + len(self.suffix)
        if len(segments) <= fixed:
            return None
        if segments[: len(self.prefix)] != self.prefix:
            return None
        if self.suffix and segments[len(segments) - len(self.suffix) :] != self.suffix:
            return None
        value = "/".join(segments[len(self.prefix) : len(segments) - len(self.suffix)])
        return value or None


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


def error_response(exc: HotshelfError) -> Response:
    """``exc``'s status, with ``to_dict()`` as the JSON body."""
    return json_response(exc.to_dict(), exc.status)


def error_json(status: int, code: str, message: str, **extra: Any) -> Response:
    """An error answer that is no ``HotshelfError`` (unknown route, a bare 500)."""
    return json_response({"error": code, "message": message, **extra}, status)


Handler = Callable[[Request], Awaitable[Response]]


class Router:
    """Exact paths (one dict lookup), plus templates with one ``{param}``.

    The parameter takes everything between the template's literal prefix and suffix,
    slashes included, so ids like ``sku/3`` work: ``/v1/items/{item_id}`` matches
    ``/v1/items/sku/3`` and ``/v1/items/{item_id}/related`` matches
    ``/v1/items/sku/3/related``. Templates with more literal segments are tried first.
    """

    def __init__(self) -> None:
        self._exact: dict[str, tuple[str, dict[str, Handler]]] = {}
        self._templates: list[_Template] = []

    def add(self, template: str, method: str, handler: Handler) -> None:
        if "{" not in template:
            self._exact.setdefault(template, (template, {}))[1][method] = handler
            return
        for known in self._templates:
            if known.template == template:
                known.methods[method] = handler
                return
        self._templates.append(_Template(template, {method: handler}))
        self._templates.sort(key=lambda t: -(len(t.prefix) + len(t.suffix)))

    def match(self, path: str) -> tuple[str, dict[str, Handler], dict[str, str]] | None:
        """(route template, handlers by method, path parameters), or None."""
        found = self._exact.get(path)
        if found is not None:
            return found[0], found[1], {}
        segments = path.strip("/").split("/")
        for template in self._templates:
            value = template.match(segments)
            if value is not None:
                return template.template, template.methods, {template.param: value}
        return None

    def templates(self) -> list[tuple[str, list[str]]]:
        """Every route and its methods, for the OpenAPI document."""
        out = [(t, sorted(m)) for t, m in self._exact.values()]
        out += [(t.template, sorted(t.methods)) for t in self._templates]
        return out
