"""``Closeable``: a resource with ``close()`` that a ``with`` block closes at its end."""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self

__all__ = ["Closeable"]


class Closeable(abc.ABC):
    """Something holding files, connections or threads until ``close()``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what this holds."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
