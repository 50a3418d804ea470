"""The rule layer of bot filtering: verdicts that need no history.

* **Known bot user agents**: ``BOT_USER_AGENTS`` is the maintained list, one
  ``(name, regex)`` per bot or HTTP library, most specific first and the generic
  ``bot|crawler|spider`` last; ``BotConfig.extra_user_agents`` adds site-specific
  patterns. A match gives the reason ``ua:<name>`` (``ua:custom`` for an extra
  pattern); a missing or blank agent gives ``ua:empty`` unless switched off.
* **IP deny list**: the log never holds a raw IP, only ``ip_hash`` (keyed BLAKE2b, see
  ``hotshelf.events.IpHasher``), so configured addresses are hashed with the same salt
  and matched exactly. A CIDR range or an ASN cannot be matched against hashes, so
  only exact addresses (``deny_ips``) and hashes (``deny_ip_hashes``) are supported.

Matching regexes costs microseconds, so verdicts are cached per user agent in a dict
of at most ``ua_cache_size`` entries, emptied when full. The cache holds a pure
function of the agent string, so it never changes a verdict and is not part of the
filter's state. (Impossible rates need a visitor's history: see ``_bot_behaviour``.)
"""

from __future__ import annotations

import ipaddress
import re

from hotshelf.config import BotConfig
from hotshelf.errors import ConfigError
from hotshelf.events import IpHasher

__all__ = ["BOT_USER_AGENTS", "DenyList", "UserAgentRules"]

# (name, case-insensitive regex searched anywhere in the agent). Keep the generic
# catch-all last: the first matching entry names the reason.
BOT_USER_AGENTS: tuple[tuple[str, str], ...] = (
    ("googlebot", r"googlebot|adsbot-google|mediapartners-google|google-inspectiontool"),
    ("bingbot", r"bingbot|bingpreview|msnbot"),
    ("yandexbot", r"yandex(?:bot|images|mobilebot|accessibilitybot)"),
    ("baiduspider", r"baiduspider"),
    ("duckduckbot", r"duckduckbot"),
    ("applebot", r"applebot"),
    ("ahrefsbot", r"ahrefsbot"),
    ("semrushbot", r"semrushbot"),
    ("facebookexternalhit", r"facebookexternalhit"),
    ("python-requests", r"python-requests"),
    ("python-urllib", r"python-urllib"),
    ("aiohttp", r"aiohttp"),
    ("curl", r"\bcurl/"),
    ("wget", r"\bwget/"),
    ("headlesschrome", r"headlesschrome"),
    ("phantomjs", r"phantomjs"),
    ("scrapy", r"scrapy"),
    ("go-http-client", r"go-http-client"),
    ("java", r"\bjava/"),
    ("okhttp", r"\bokhttp"),
    ("libwww-perl", r"libwww-perl"),
    # "bot" not preceded by "cu" (Cubot phones) and not followed by a letter.
    ("bot", r"(?<!cu)bot(?![a-z])|crawler|spider|scraper"),
)

_HEX_DIGITS = frozenset("0123456789abcdef")
_IP_HASH_LEN = 32  # IpHasher: BLAKE2b with a 16-byte digest, hex


class UserAgentRules:
    """User agent -> reason (``"ua:<name>"``), or ``""`` for an agent that looks human."""

    __slots__ = ("_cache_size", "_empty", "_patterns", "cache")

    def __init__(self, config: BotConfig) -> None:
        named = list(BOT_USER_AGENTS)
        named += [("custom", pattern) for pattern in config.extra_user_agents]
        try:
            self._patterns = [(f"ua:{n}", re.compile(p, re.IGNORECASE)) for n, p in named]
        except re.error as exc:
            raise ConfigError(f"bots.extra_user_agents: bad pattern: {exc}") from None
        self._empty = "ua:empty" if config.flag_empty_user_agent else ""
        self.cache: dict[str, str] = {}  # agent -> reason; emptied when full, never replaced
        self._cache_size = config.ua_cache_size

    def reason(self, user_agent: str | None) -> str:
        """Why this agent is a bot (``"ua:googlebot"``), or ``""``."""
        if not user_agent:
            return self._empty
        found = self.cache.get(user_agent)
        if found is None:
            found = self._match(user_agent)
            if len(self.cache) >= self._cache_size:
                self.cache.clear()
            self.cache[user_agent] = found
        return found

    def _match(self, user_agent: str) -> str:
        if user_agent.isspace():
            return self._empty
        for reason, pattern in self._patterns:
            if pattern.search(user_agent):
                return reason
        return ""


class DenyList:
    """The configured deny list as a set of ``ip_hash`` values."""

    __slots__ = ("hashes",)

    def __init__(self, config: BotConfig, ip_hash_salt: str | None) -> None:
        hashes = {_checked_hash(h) for h in config.deny_ip_hashes}
        if config.deny_ips:
            if ip_hash_salt is None:
                raise ConfigError(
                    "bots.deny_ips needs the events.ip_hash_salt the log hashes IPs with: "
                    "pass BotFilter(config.bots, ip_hash_salt=config.events.ip_hash_salt)"
                )
            hasher = IpHasher(ip_hash_salt)
            for ip in config.deny_ips:
                hashes.update(hasher(text) for text in _spellings(ip))
        self.hashes = frozenset(hashes)

    def __contains__(self, ip_hash: object) -> bool:
        return ip_hash in self.hashes


def _spellings(ip: str) -> set[str]:
    """The address as configured and in canonical form: clients send either."""
    text = ip.strip()
    try:
        canonical = str(ipaddress.ip_address(text))
    except ValueError:
        raise ConfigError(f"bots.deny_ips: {ip!r} is not an IP address") from None
    return {text, canonical}


def _checked_hash(value: str) -> str:
    text = value.strip().lower()
    if len(text) != _IP_HASH_LEN or not set(text) <= _HEX_DIGITS:
        raise ConfigError(f"bots.deny_ip_hashes: {value!r} is not a 32-digit hex ip_hash")
    return text
