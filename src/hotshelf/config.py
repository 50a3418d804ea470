"""hotshelf's one typed configuration.

Sources, later ones win: built-in defaults < TOML file < environment < CLI flags.

* TOML: ``hotshelf.toml`` in the working directory, or the path in ``HOTSHELF_CONFIG``
  or ``--config``. Sections mirror the structs below (``[log]``, ``[server]`` ...).
* Environment: ``HOTSHELF_<SECTION>__<KEY>``, e.g. ``HOTSHELF_LOG__BACKEND=redis``,
  ``HOTSHELF_DATA_DIR=/var/lib/hotshelf``. Values are parsed as TOML scalars
  where they can be (``true``, ``5``, ``0.5``) and taken as strings otherwise.
* CLI: ``--set section.key=value`` (same value parsing) on any command.

Every field is documented in ``docs/CONFIGURATION.md``; the defaults work out of the
box with no external server.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

from hotshelf.errors import ConfigError

__all__ = [
    "BotConfig",
    "Config",
    "EventsConfig",
    "LogConfig",
    "LoggingConfig",
    "ServerConfig",
    "StreamConfig",
    "load_config",
]

ENV_PREFIX = "HOTSHELF_"


class LogConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The durable event log."""

    backend: Literal["file", "redis"] = "file"
    # file backend
    segment_max_bytes: int = 128 * 1024 * 1024
    segment_roll: Literal["hour", "day", "size"] = "hour"
    index_interval_bytes: int = 64 * 1024
    fsync: bool = True
    retention_hours: float | None = 24.0 * 7
    retention_bytes: int | None = None
    # redis backend
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "hotshelf"
    redis_maxlen: int | None = None
    redis_claim_idle_ms: int = 30_000


class ServerConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The HTTP service."""

    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1024 * 1024
    max_events_per_request: int = 1000
    access_log: bool = False


class EventsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Event validation and de-duplication."""

    max_past_skew_s: float = 7 * 24 * 3600.0
    max_future_skew_s: float = 300.0
    dedup_window_s: float = 3600.0
    dedup_max_ids: int = 2_000_000
    max_properties: int = 64
    max_property_depth: int = 4
    max_properties_bytes: int = 8 * 1024
    max_string_chars: int = 1024
    ip_hash_salt: str = "hotshelf"


class StreamConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Stream processing: trending/popular state derived from the events log."""

    windows_s: list[float] = msgspec.field(default_factory=lambda: [3600.0, 86400.0, 604800.0])
    top_k: int = 100
    snapshot_interval_s: float = 5.0


class BotConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Bot filtering ahead of aggregation."""

    enabled: bool = True
    deny_ips: list[str] = msgspec.field(default_factory=list)


class LoggingConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Structured logs."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """All of hotshelf's settings."""

    data_dir: str = "./hotshelf-data"
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    events: EventsConfig = msgspec.field(default_factory=EventsConfig)
    stream: StreamConfig = msgspec.field(default_factory=StreamConfig)
    bots: BotConfig = msgspec.field(default_factory=BotConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


def _parse_scalar(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = [p for p in dotted.split(".") if p]
    if not parts:
        raise ConfigError(f"empty configuration key in {dotted!r}")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        dotted = key[len(ENV_PREFIX) :].lower().replace("__", ".")
        _set_path(tree, dotted, _parse_scalar(raw))
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    path: str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> Config:
    """The configuration from defaults, a TOML file, the environment and ``key=value`` overrides."""
    environ = os.environ if environ is None else environ
    tree: dict[str, Any] = {}
    file = Path(path) if path else None
    if file is None and environ.get(ENV_PREFIX + "CONFIG"):
        file = Path(environ[ENV_PREFIX + "CONFIG"])
    if file is None and Path("hotshelf.toml").is_file():
        file = Path("hotshelf.toml")
    if file is not None:
        try:
            tree = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"configuration file not found: {file}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: invalid TOML: {exc}") from None
    tree = _merge(tree, _from_env(environ))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        _set_path(tree, key.strip(), _parse_scalar(raw.strip()))
    try:
        return msgspec.convert(tree, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
