"""The hotshelf exception tree.

Every error raised on purpose by hotshelf derives from :class:`HotshelfError` and
carries the HTTP status it maps to, so the API turns any of them into a clear
response in one handler (``serving``) and the CLI into a non-zero exit code.

    HotshelfError                      500
    ├── ConfigError                    500  bad configuration file / env / flag
    ├── ValidationError                422  bad input; carries per-field problems
    │   ├── PayloadTooLargeError       413  body / batch / property size limits
    │   └── UnsupportedMediaTypeError  415  wrong Content-Type
    ├── NotFoundError                  404  unknown item, consumer, ...
    ├── ConflictError                  409  request conflicts with current state
    ├── UnavailableError               503  a dependency (Redis, disk) is down
    └── LogError                       500  the event log
        ├── LogClosedError             503  append/read after close()
        ├── OffsetOutOfRangeError      416  read below retention or past the end
        └── CorruptLogError            500  checksum/framing damage; carries the range
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

__all__ = [
    "ConfigError",
    "ConflictError",
    "CorruptLogError",
    "FieldProblem",
    "HotshelfError",
    "LogClosedError",
    "LogError",
    "NotFoundError",
    "OffsetOutOfRangeError",
    "PayloadTooLargeError",
    "UnavailableError",
    "UnsupportedMediaTypeError",
    "ValidationError",
]


class FieldProblem(msgspec.Struct, frozen=True):
    """One thing wrong with one input field: ``path`` is JSON-pointer-like ("$[3].timestamp")."""

    path: str
    problem: str


class HotshelfError(Exception):
    """Root of every error hotshelf raises on purpose."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        """The JSON body the API answers with."""
        return {"error": self.code, "message": self.message}


class ConfigError(HotshelfError):
    code = "config_error"


class ValidationError(HotshelfError):
    status = 422
    code = "validation_error"

    def __init__(self, message: str, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []

    def to_dict(self) -> dict[str, object]:
        body = super().to_dict()
        body["problems"] = [{"path": p.path, "problem": p.problem} for p in self.problems]
        return body


class PayloadTooLargeError(ValidationError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(ValidationError):
    status = 415
    code = "unsupported_media_type"


class NotFoundError(HotshelfError):
    status = 404
    code = "not_found"


class ConflictError(HotshelfError):
    status = 409
    code = "conflict"


class UnavailableError(HotshelfError):
    status = 503
    code = "unavailable"


class LogError(HotshelfError):
    code = "log_error"


class LogClosedError(LogError):
    status = 503
    code = "log_closed"


class OffsetOutOfRangeError(LogError):
    status = 416
    code = "offset_out_of_range"


class CorruptLogError(LogError):
    """Damage found in the log. ``first``/``last`` bound the offsets that cannot be read."""

    code = "corrupt_log"

    def __init__(self, message: str, *, path: str, first: int, last: int | None) -> None:
        super().__init__(message)
        self.path = path
        self.first = first
        self.last = last

    def to_dict(self) -> dict[str, object]:
        body = super().to_dict()
        body.update(path=self.path, first_offset=self.first, last_offset=self.last)
        return body
