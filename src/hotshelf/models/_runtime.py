"""The model runtime interface: one loaded model that answers batch predictions.

A runtime has a ``name`` (what model it is) and a ``version`` (exactly which weights:
the kind of runtime plus a prefix of the model file's sha256, so two processes that
report the same version compute the same function). Its life cycle is explicit, so a
server can load and warm models before it takes traffic::

    runtime.load()        # idempotent; reads the model, raises ConfigError if unusable
    runtime.warm_up()     # one small prediction, so the first request pays no set-up
    runtime.predict(xs)   # a batch in, a batch out; UnavailableError when not loaded
    runtime.close()       # releases the model; load() may be called again

A runtime is also a context manager (load on enter, close on exit).
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Generic, Self, TypeVar

from hotshelf.errors import ConfigError, UnavailableError

__all__ = ["ModelRuntime", "file_version"]

InT = TypeVar("InT")
OutT = TypeVar("OutT")

# 12 hex digits (48 bits) tell model files apart without making versions unwieldy.
_VERSION_DIGITS = 12


def file_version(path: Path, kind: str) -> str:
    """``<kind>-<first 12 hex digits of the file's sha256>``, e.g. ``onnx-int8-8199be6f699a``."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise ConfigError(f"cannot read model file {path}: {exc.strerror or exc}") from exc
    return f"{kind}-{digest.hexdigest()[:_VERSION_DIGITS]}"


class ModelRuntime(abc.ABC, Generic[InT, OutT]):
    """A model behind a batch ``predict``: items of type ``InT`` in, one ``OutT`` out."""

    def __init__(self) -> None:
        self._loaded = False

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """What model this is, e.g. ``all-MiniLM-L6-v2``."""

    @property
    @abc.abstractmethod
    def version(self) -> str:
        """Which exact weights: stable across processes and machines for the same files."""

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        """Read the model into memory; a second call does nothing."""
        if not self._loaded:
            self._load()
            self._loaded = True

    def close(self) -> None:
        """Release the model; ``predict`` raises until the next ``load``."""
        if self._loaded:
            self._loaded = False
            self._close()

    def predict(self, batch: Sequence[InT]) -> OutT:
        """Predict for every item of ``batch``, in order."""
        if not self._loaded:
            raise UnavailableError(f"model {self.name} ({self.version}) is not loaded")
        return self._predict(batch)

    def warm_up(self) -> None:
        """Run one small prediction so lazy set-up happens now, not on the first request."""
        self.predict(self._warm_up_batch())

    def __enter__(self) -> Self:
        self.load()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "loaded" if self._loaded else "not loaded"
        return f"<{type(self).__name__} {self.name} {self.version} ({state})>"

    @abc.abstractmethod
    def _load(self) -> None: ...

    @abc.abstractmethod
    def _close(self) -> None: ...

    @abc.abstractmethod
    def _predict(self, batch: Sequence[InT]) -> OutT: ...

    @abc.abstractmethod
    def _warm_up_batch(self) -> Sequence[InT]: ...
