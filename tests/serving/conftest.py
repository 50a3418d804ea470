"""A real app over a real FileLog in a temporary data directory, served over HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hotshelf.serving import create_app
from tests.serving.api import Api, make_config


@pytest.fixture
def start_api(tmp_path: Path) -> Iterator[Callable[..., Api]]:
    """Start an app over ``tmp_path`` (or ``data_dir``); every one is stopped at teardown."""
    started: list[Api] = []

    def start(*overrides: str, data_dir: Path = tmp_path, lifespan: bool = True) -> Api:
        api = Api(create_app(make_config(data_dir, *overrides)), lifespan=lifespan)
        started.append(api)
        return api

    yield start
    for api in reversed(started):
        api.close()


@pytest.fixture
def api(start_api: Callable[..., Api]) -> Api:
    return start_api()
