"""Structured logs: JSON lines, levels, stdlib loggers, no locals in tracebacks."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from hotshelf.config import LoggingConfig
from hotshelf.monitoring import configure_logging, get_logger


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    yield out
    structlog.reset_defaults()
    root.handlers, root.level = handlers, level


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines(stream: io.StringIO) -> None:
    log = get_logger("hotshelf.test")  # created before configuration, like module loggers
    configure_logging(LoggingConfig(level="info"), stream=stream, cache=False)
    log.info("hello", n=1)
    log.debug("hidden")
    logging.getLogger("uvicorn.error").warning("from %s", "stdlib")
    first, second = lines(stream)
    assert first["event"] == "hello"
    assert first["n"] == 1
    assert first["logger"] == "hotshelf.test"
    assert first["level"] == "info"
    assert "timestamp" in first
    assert second == {
        **second,
        "event": "from stdlib",
        "logger": "uvicorn.error",
        "level": "warning",
    }


def test_tracebacks_carry_no_locals(stream: io.StringIO) -> None:
    configure_logging(LoggingConfig(), stream=stream, cache=False)
    card = "card-4111"  # noqa: F841 - a local the traceback must not show
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger("t").exception("failed")
    [line] = lines(stream)
    assert line["exception"][0]["exc_type"] == "ValueError"  # type: ignore[index]
    assert "card-4111" not in stream.getvalue()


def test_console_format(stream: io.StringIO) -> None:
    configure_logging(LoggingConfig(format="console", level="debug"), stream=stream, cache=False)
    get_logger("t").debug("shown")
    assert "shown" in stream.getvalue()
    assert not stream.getvalue().startswith("{")
