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

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

from hotshelf.errors import ConfigError

__all__ = [
    "BotConfig",
    "CollaborativeConfig",
    "Config",
    "EmbeddingsConfig",
    "EventsConfig",
    "ExperimentsConfig",
    "LogConfig",
    "LoggingConfig",
    "RecommendConfig",
    "ServerConfig",
    "StreamConfig",
    "VariantConfig",
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
    # BLAS threads in the serving process. Requests make small matrix products, and
    # OpenBLAS's threads spin after each one: with 2 they took ~0.8 of a core from the
    # event loop at 250 recommendations/s.
    blas_threads: int = 1

    def __post_init__(self) -> None:
        if self.blas_threads < 1:
            raise ValueError("server.blas_threads must be at least 1")


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

    # run the processor inside `hotshelf serve` and answer the trend/related/bot queries
    serve: bool = True
    windows_s: list[float] = msgspec.field(default_factory=lambda: [3600.0, 86400.0, 604800.0])
    top_k: int = 100
    snapshot_interval_s: float = 5.0
    snapshot_every_records: int = 1_000_000  # ... or after this many records, whichever is first
    # the longest window's trend is measured against a baseline this long (28 d)
    trend_baseline_s: float = 28 * 86400.0
    # units one visitor adds to an item per funnel step; a visitor counts once, at its deepest
    event_weights: dict[str, int] = msgspec.field(
        default_factory=lambda: {"view": 1, "click": 2, "add_to_cart": 5, "purchase": 10}
    )
    min_support: float = 5.0  # decayed units an item needs in a window before it can trend
    trend_smoothing: float = 5.0  # added to the expected units in the trend score's denominator
    visitor_horizon_s: float = 3600.0  # a visitor counts once per item in this much event time
    ip_visitor_cap: int = 3  # visitors counted per item per IP hash per horizon
    max_visitor_pairs: int = 1_000_000  # (visitor, item) and (IP, item) pairs remembered
    spike_interval_s: float = 60.0  # the spike guard counts new visitors per item per interval
    spike_history: int = 30  # intervals of history behind the guard's median/MAD
    spike_floor: int = 20  # new visitors per interval an item may always gain
    spike_mads: float = 3.0  # more than median + this many (scaled) MADs is a spike
    max_spike_items: int = 200_000  # items the spike guard tracks
    sketch_capacity: int = 2000  # heavy-hitter counters per column of a roll-up segment
    segment_sketch_capacity: int = 200  # ... of a location x device x category segment
    max_segments: int = 10_000  # segments kept; events of newer ones count in roll-ups only
    history_length: int = 20  # items kept per list (viewed, carted, bought) per user/session
    max_sessions: int = 200_000  # session histories kept, least recently active dropped first
    max_users: int = 200_000  # user histories kept, least recently active dropped first
    co_window: int = 3  # a new item in a session is paired with this many before it
    related_capacity: int = 50  # co-engagement counters per item and kind
    max_related_items: int = 100_000  # items with co-engagement lists, per kind
    catalog_grace_ms: int = 200  # how long a catalog append may take to become readable
    # share of each processing round the batch lane gets even while live events wait
    batch_min_share: float = 0.1
    freshness_samples: int = 10_000  # recent freshness samples kept for percentiles
    # processor processes sharing the stream by visitor key (`hotshelf stream run
    # --partition I/N`); readers (``RemoteState``) merge this many partitions' snapshots
    partitions: int = 1
    remote_refresh_s: float = 0.5  # readers re-fetch changed snapshots at most this often

    def __post_init__(self) -> None:
        if not self.windows_s or min(self.windows_s) <= 0:
            raise ValueError("stream.windows_s needs at least one positive window")
        if self.trend_baseline_s <= max(self.windows_s):
            raise ValueError("stream.trend_baseline_s must be longer than the longest window")
        steps = {"view", "click", "add_to_cart", "purchase"}
        weights = self.event_weights
        if set(weights) - steps or not all(0 <= w < 1 << 15 for w in weights.values()):
            raise ValueError(f"stream.event_weights: keys among {sorted(steps)}, 0 <= w < 32768")
        if not 0 < self.batch_min_share < 1:
            raise ValueError("stream.batch_min_share must be between 0 and 1 (exclusive)")
        if self.remote_refresh_s < 0:
            raise ValueError("stream.remote_refresh_s must not be negative")
        counts = (
            "top_k", "snapshot_every_records", "ip_visitor_cap", "max_visitor_pairs",
            "spike_history", "max_spike_items", "sketch_capacity", "segment_sketch_capacity",
            "max_segments", "history_length", "max_sessions", "max_users", "co_window",
            "related_capacity", "max_related_items", "freshness_samples", "partitions",
        )  # fmt: skip
        for name in counts:
            if getattr(self, name) < 1:
                raise ValueError(f"stream.{name} must be at least 1")


class BotConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Bot filtering ahead of aggregation (``hotshelf.stream.BotFilter``)."""

    enabled: bool = True
    # exact IP addresses; the log keeps only hashes, so CIDR ranges cannot be matched
    deny_ips: list[str] = msgspec.field(default_factory=list)
    # ip_hash values (hex) as the log and GET /v1/bots show them
    deny_ip_hashes: list[str] = msgspec.field(default_factory=list)
    # more bot user-agent regexes (case-insensitive), on top of the built-in list
    extra_user_agents: list[str] = msgspec.field(default_factory=list)
    flag_empty_user_agent: bool = True  # events without a user agent count as bots
    max_tracked: int = 100_000  # visitors kept per key kind; the least recently seen go first
    flag_ttl_s: float = 900.0  # a flag lasts this long (event time) after its last evidence
    max_events_per_s: int = 20  # this many events in a row, each < 1/this s apart: impossible
    ip_share: int = 5  # IP rate thresholds are this many times a cookie's (NAT, offices)
    rate_window_s: float = 10.0  # sliding event-time window of the rate and click-spam checks
    rate_max_events: int = 40  # more events than this in the window flags a visitor
    spam_min_repeats: int = 8  # this many item events on the last 3 items in the window: spam
    regular_gaps: int = 5  # regularity is judged over a visitor's last this many gaps ...
    regular_max_cv: float = 0.03  # ... flagged when their coefficient of variation is this or less
    regular_min_gap_s: float = 2.0  # ... and all are this long (a shorter gap starts over)
    funnel_window_s: float = 3600.0  # the funnel's view count halves every this many seconds
    funnel_min_views: int = 150  # this many views (so counted) with no cart or purchase: bot
    ua_cache_size: int = 10_000  # user agents whose rule verdict is cached

    def __post_init__(self) -> None:
        counts: tuple[str, ...] = ("max_tracked", "max_events_per_s", "ip_share", "rate_max_events")
        counts += ("spam_min_repeats", "regular_gaps", "funnel_min_views", "ua_cache_size")
        for name in counts:
            if getattr(self, name) < 1:
                raise ValueError(f"bots.{name} must be at least 1")
        for name in ("flag_ttl_s", "rate_window_s", "funnel_window_s", "regular_min_gap_s"):
            if not getattr(self, name) >= 0.001:
                raise ValueError(f"bots.{name} must be at least 0.001")
        if not self.regular_max_cv >= 0.0:
            raise ValueError("bots.regular_max_cv must be at least 0")
        for ip in self.deny_ips:
            if "/" in ip:
                raise ValueError(
                    f"bots.deny_ips: {ip!r} is a range; the log stores only IP hashes, "
                    "so only exact addresses can be matched"
                )
            ipaddress.ip_address(ip.strip())  # ValueError names the bad address
        for pattern in self.extra_user_agents:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bots.extra_user_agents: {pattern!r}: {exc}") from None


class EmbeddingsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Product embeddings: the encoder, the two-tier store and the nearest-neighbour index."""

    # encode the catalog in `hotshelf serve` and answer /v1/embeddings, similar, search, rank
    serve: bool = True
    # a fine-tuned model dir (`hotshelf finetune`); unset = the shipped all-MiniLM-L6-v2 int8
    model_dir: str | None = None
    threads: int | None = None  # encoder threads; unset = the machine's cores
    batch_size: int = 64
    max_text_tokens: int = 128
    description_chars: int = 300  # of the description, encoded after title and category
    # remote tier: "mmap" (a file under data_dir, no server) or "redis"
    backend: Literal["mmap", "redis"] = "mmap"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "hotshelf:emb"
    local_capacity: int = 100_000  # rows in the local hot tier
    remote_deadline_ms: float = 20.0  # a request with local misses waits this long at most
    # nearest neighbours: "exact" (a matrix product), "hnsw" (usearch), "auto" (exact
    # below exact_max_items)
    index: Literal["auto", "exact", "hnsw"] = "auto"
    exact_max_items: int = 5_000
    hnsw_connectivity: int = 16
    hnsw_expansion_add: int = 128
    hnsw_expansion_search: int = 64
    refresh_s: float = 1.0  # how often the service re-embeds items changed in the catalog log
    max_k: int = 100
    max_ids: int = 1000  # item ids per /v1/embeddings or /v1/rank request
    max_query_chars: int = 1000
    # product photos fused with the text (hotshelf.embeddings._images): an item's
    # `image` is a file path under image_root; two items with photos score
    # (1 - image_weight) x text cosine + image_weight x photo cosine. 0 = text only.
    image_weight: float = 0.0
    image_root: str | None = None
    image_dim: int = 256  # photo values per vector, after a fixed random rotation (<= 1280)
    max_image_bytes: int = 20_000_000

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_text_tokens", "local_capacity", "max_k", "max_ids",
                     "max_query_chars", "hnsw_connectivity", "hnsw_expansion_add",
                     "hnsw_expansion_search", "image_dim", "max_image_bytes"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"embeddings.{name} must be at least 1")
        if self.remote_deadline_ms <= 0 or self.refresh_s <= 0:
            raise ValueError("embeddings.remote_deadline_ms and refresh_s must be positive")
        if self.description_chars < 0 or self.exact_max_items < 0:
            raise ValueError("embeddings.description_chars and exact_max_items must be >= 0")
        if not 0.0 <= self.image_weight < 1.0:
            raise ValueError("embeddings.image_weight must be at least 0 and below 1")
        if self.image_weight > 0 and not self.image_root:
            raise ValueError("embeddings.image_weight > 0 needs embeddings.image_root")
        if self.image_dim > 1280:
            raise ValueError("embeddings.image_dim must be at most 1280 (the photo model's)")


# The L2 penalty per algorithm when none is set. ALS: strong, since most shoppers have few
# events (chosen on the simulator and MovieLens, see docs/BENCHMARKS.md); BPR:
# implicit's own default, its updates are per sampled triple, on another scale.
REGULARIZATION = {"als": 5.0, "bpr": 0.01}


class CollaborativeConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Collaborative filtering on implicit feedback: ``hotshelf train``, ``implicit``."""

    algorithm: Literal["als", "bpr"] = "als"
    factors: int = 32
    iterations: int = 15
    # L2 penalty; unset = the algorithm's own default (REGULARIZATION): the two scales differ
    regularization: float | None = None
    learning_rate: float = 0.01  # bpr only
    alpha: float = 1.0  # confidence = 1 + alpha * weight (als)
    # confidence weight of each event type; types not named here are not feedback
    event_weights: dict[str, float] = msgspec.field(
        default_factory=lambda: {"view": 1.0, "click": 1.0, "add_to_cart": 4.0, "purchase": 8.0}
    )
    min_user_events: int = 1  # users with fewer feedback events are not trained on
    seed: int = 0
    retrain_s: float = 0.0  # `hotshelf serve` retrains this often from the log; 0 = never
    max_fold_in_items: int = 200  # most recent items used to fold in a user unseen in training

    def __post_init__(self) -> None:
        for name in ("factors", "iterations", "min_user_events", "max_fold_in_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"recommend.cf.{name} must be at least 1")
        if self.l2 < 0 or self.learning_rate <= 0 or self.alpha <= 0:
            raise ValueError("recommend.cf: regularization >= 0, learning_rate and alpha > 0")
        known = {"view", "click", "add_to_cart", "purchase"}
        weights = self.event_weights
        if not weights or set(weights) - known or min(weights.values()) <= 0:
            raise ValueError(f"recommend.cf.event_weights: keys among {sorted(known)}, w > 0")
        if self.retrain_s < 0:
            raise ValueError("recommend.cf.retrain_s must not be negative")

    @property
    def l2(self) -> float:
        """The L2 penalty training uses: ``regularization``, else the algorithm's default."""
        if self.regularization is not None:
            return self.regularization
        return REGULARIZATION[self.algorithm]


class VariantConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One experiment arm: its share of visitors and the router settings it changes."""

    name: str
    weight: float = 1.0
    # router settings this arm overrides: blend_weights, diversity, candidates
    overrides: dict[str, Any] = msgspec.field(default_factory=dict)


class ExperimentsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A/B variants by stable hash of the visitor, and attribution of what followed."""

    salt: str = "hotshelf"  # change it to reshuffle visitors between arms
    variants: list[VariantConfig] = msgspec.field(
        default_factory=lambda: [VariantConfig(name="control")]
    )
    click_window_s: float = 1800.0  # a click this soon after an impression is attributed
    purchase_window_s: float = 86400.0  # ... a purchase
    # impressions remembered for attribution, oldest first out (~0.8 KiB each at k=20)
    max_impressions: int = 200_000

    def __post_init__(self) -> None:
        names = [v.name for v in self.variants]
        if not names or len(set(names)) != len(names) or not all(names):
            raise ValueError("recommend.experiments.variants: at least one, names unique")
        if min(v.weight for v in self.variants) <= 0:
            raise ValueError("recommend.experiments.variants: every weight must be positive")
        if self.click_window_s <= 0 or self.purchase_window_s <= 0 or self.max_impressions < 1:
            raise ValueError("recommend.experiments: windows positive, max_impressions >= 1")


class RecommendConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``/v1/recommend``: routing, blending, post-processing, precomputed lists."""

    serve: bool = True
    max_k: int = 100
    default_k: int = 20
    candidates: int = 50  # candidates each route brings before blending and filtering
    # how much each route counts where several apply (reciprocal-rank blending)
    blend_weights: dict[str, float] = msgspec.field(
        default_factory=lambda: {"browsing": 1.0, "personal": 1.0, "generic": 0.7}
    )
    co_engagement_weight: float = 0.5  # browsing: co-engagement vs content similarity
    trending_weight: float = 0.5  # generic: trending against popular's 1
    history_weight: float = (
        0.5  # personal: items co-viewed with the visitor's own history vs CF's 1
    )
    # MMR trade-off: 0 = relevance only (off: it costs offline recall, see BENCHMARKS.md),
    # 1 = diversity only; an experiment arm can turn it on for a share of visitors
    diversity: float = 0.0
    session_items: int = 5  # most recent session items that seed "browsing now"
    exclude_bought_s: float = 30 * 86400.0  # never recommend what was bought this recently
    precompute_memory_mb: int = 64  # budget for precomputed per-user and per-segment lists
    # While events keep arriving in a segment, its generic list is rebuilt in the
    # background about every half of this, and a request is never given one built
    # longer ago (0: rebuilt on the request that finds it stale)
    segment_refresh_s: float = 2.0
    max_filter_categories: int = 32
    # Processes that answer /v1/recommend beside the server's own, each following the
    # server's logs, embeddings and saved model (0: the server answers every request)
    replicas: int = 0
    # requests one replica may have in flight before the server answers the next itself
    replica_max_in_flight: int = 8
    cf: CollaborativeConfig = msgspec.field(default_factory=CollaborativeConfig)
    experiments: ExperimentsConfig = msgspec.field(default_factory=ExperimentsConfig)

    def __post_init__(self) -> None:
        for name in ("max_k", "default_k", "candidates", "session_items", "max_filter_categories"):
            if getattr(self, name) < 1:
                raise ValueError(f"recommend.{name} must be at least 1")
        if self.default_k > self.max_k:
            raise ValueError("recommend.default_k must not exceed recommend.max_k")
        routes = {"browsing", "personal", "generic"}
        if set(self.blend_weights) != routes or min(self.blend_weights.values()) < 0:
            raise ValueError(f"recommend.blend_weights: a weight >= 0 for each of {sorted(routes)}")
        if self.trending_weight < 0 or self.history_weight < 0:
            raise ValueError("recommend.trending_weight and history_weight must be >= 0")
        if not 0 <= self.diversity <= 1 or not 0 <= self.co_engagement_weight <= 1:
            raise ValueError("recommend.diversity and co_engagement_weight lie in [0, 1]")
        if self.replicas < 0 or self.replica_max_in_flight < 1:
            raise ValueError("recommend.replicas must be >= 0, replica_max_in_flight >= 1")
        for name in ("exclude_bought_s", "precompute_memory_mb", "segment_refresh_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"recommend.{name} must be >= 0")


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
    embeddings: EmbeddingsConfig = msgspec.field(default_factory=EmbeddingsConfig)
    recommend: RecommendConfig = msgspec.field(default_factory=RecommendConfig)
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
