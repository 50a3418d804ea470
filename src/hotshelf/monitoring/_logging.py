"""Structured logs: one JSON object per line on stderr (or a readable console form).

structlog renders hotshelf's own events; the standard library's loggers (uvicorn's
error logger, libraries) go through the same renderer, so every line has one shape.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import msgspec
import structlog

from hotshelf.config import LoggingConfig

__all__ = ["configure_logging", "get_logger"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}  # fmt: skip


def _json_serializer(obj: Any, **_: Any) -> str:
    return msgspec.json.encode(obj, enc_hook=str).decode()


def _rename_logger_name(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    if "logger_name" in event:
        event["logger"] = event.pop("logger_name")
    return event


def configure_logging(
    config: LoggingConfig, *, stream: TextIO | None = None, cache: bool = True
) -> None:
    """Set up structlog and the standard library's root logger from ``config``.

    ``cache=False`` lets a later call reconfigure loggers already used (tests).
    """
    stream = sys.stderr if stream is None else stream
    level = _LEVELS[config.level]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _rename_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if config.format == "json":
        # Tracebacks as data, without local variables: those may hold request bodies.
        transformer = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        shared.append(structlog.processors.ExceptionRenderer(transformer))
        renderer = structlog.processors.JSONRenderer(serializer=_json_serializer)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=cache,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A structlog logger whose lines carry ``logger=name``.

    Lazy: safe at import time, it takes the configuration in force at its first use.
    """
    # ``logger=`` cannot be bound here (it is wrap_logger's own argument): it is bound
    # as ``logger_name`` and renamed when rendered.
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(logger_name=name)
    return logger
