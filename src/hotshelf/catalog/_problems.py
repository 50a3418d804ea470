"""Turning msgspec's validation messages into ``FieldProblem`` parts."""

from __future__ import annotations

import re

import msgspec

__all__ = ["split_error"]

# msgspec ends a message with the failing location: "... - at `$.price`".
_AT = re.compile(r"^(?P<problem>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")


def split_error(exc: msgspec.ValidationError) -> tuple[str, str]:
    """``(path, problem)`` for a validation error; ``path`` is relative ("[3].title", ".price")."""
    message = str(exc)
    if found := _MISSING.match(message):
        return "." + found["field"], "required field missing"
    if found := _AT.match(message):
        return found["path"], found["problem"]
    return "", message
