"""``BotFilter``: is this event from a bot? Asked once per event, in log order.

The rule layer (``_bot_rules``: bot user agents, IP deny list) answers first; an
event it flags is not fed to the behavioural layer (``_bot_behaviour``: rates,
regularity, diversity, funnels per cookie, ip_hash and session). An event is a bot's
when any of its keys is flagged; ``Verdict.reasons`` names every key that is.

Deterministic and event-time driven: verdicts depend only on the events seen so far
and their ``ts_ms``. ``to_state()`` is a snapshot of plain builtins (ints, strings,
lists, dicts built in a fixed order), so ``msgspec.msgpack.encode(f.to_state())`` is
byte-identical for identical histories, and ``BotFilter.from_state`` continues
exactly where the snapshot was taken.

Fast: the common event (a cached user agent, an IP and a session seen with its cookie
only) costs one visitor update and two string comparisons (the cookie's visitor
remembers the IP and session known to share it, so neither is looked up), about 3 µs
on CPython 3.11; verdicts are shared objects, not built per event.

Memory is bounded: each of the three visitor trackers and the two rule-hit tables
(per user agent, per denied ip_hash) holds at most ``max_tracked`` entries, the least
recently seen dropped first; the user-agent verdict cache at most ``ua_cache_size``.
A visitor is under 1 KB (see ``_bot_behaviour``); a rule hit about 0.2 KB plus its
key (a user agent is at most 1 KB). At most, then, ``max_tracked * (3 * 0.85 KB +
2 * 1.2 KB) + ua_cache_size * 1.1 KB``: about 0.5 GB at the defaults, in the
worst case of every visitor distinct and every bot agent 1 KB long.
"""

from __future__ import annotations

from typing import Any

from hotshelf.config import BotConfig
from hotshelf.errors import HotshelfError
from hotshelf.events import EventType, StoredEvent
from hotshelf.stream._answers import BotRecord, KeyKind, Verdict
from hotshelf.stream._bot_behaviour import (
    CONVERT,
    ITEM,
    VIEW,
    VisitorTracker,
    evict_least_recent,
)
from hotshelf.stream._bot_rules import DenyList, UserAgentRules

__all__ = ["BotFilter"]
_STATE_VERSION = 1
_BITS: dict[EventType, int] = {
    EventType.VIEW: ITEM | VIEW,
    EventType.CLICK: ITEM,
    EventType.ADD_TO_CART: ITEM | CONVERT,
    EventType.PURCHASE: CONVERT,
    EventType.IMPRESSION: 0,
    EventType.SEARCH: 0,
}


_HUMAN = Verdict(False, ())


class _Hit:
    """A key the rule layer flagged (a user agent, a denied ip_hash)."""

    __slots__ = ("events", "first", "last", "reason")

    def __init__(self, ts: int, reason: str) -> None:
        self.first = self.last = ts
        self.events = 0
        self.reason = reason


class BotFilter:
    """Bot verdicts for events in log order, with state that snapshots and restores exactly.

    ``check`` once per event; ``verdicts`` lists the visitors flagged now (for
    ``GET /v1/bots``), ``stats`` counts events and reasons (for metrics).
    ``ip_hash_salt`` (``config.events.ip_hash_salt``) is needed only for ``deny_ips``.
    """

    def __init__(self, config: BotConfig, *, ip_hash_salt: str | None = None) -> None:
        self.config = config
        self._ua = UserAgentRules(config)
        self._deny = DenyList(config, ip_hash_salt).hashes
        self._cookies = VisitorTracker("cookie", config)
        self._ips = VisitorTracker("ip", config)
        self._sessions = VisitorTracker("session", config)
        self._cookie_entries = self._cookies.visitors
        self._ip_entries, self._session_entries = self._ips.visitors, self._sessions.visitors
        self._ua_cache = self._ua.cache
        self._enabled = config.enabled
        self._agents: dict[str, _Hit] = {}
        self._denied: dict[str, _Hit] = {}
        self._keep = config.max_tracked - max(1, config.max_tracked // 8)
        self._ttl = round(config.flag_ttl_s * 1000)
        self._verdicts: dict[tuple[str, str, str], Verdict] = {}
        self._now = 0
        self._checked = self._flagged = 0
        self._reasons: dict[str, int] = {}

    def check(self, event: StoredEvent) -> Verdict:
        """The verdict on one event; call once per event, in log order."""
        return self.verdict_of(
            event.type, event.ts_ms, event.cookie_id, event.session_id, event.item_id,
            event.ip_hash, event.user_agent,
        )  # fmt: skip

    def verdict_of(
        self,
        kind: EventType,
        ts: int,
        cookie: str | None,
        session: str | None,
        item: str | None,
        ip: str | None,
        ua: str | None,
    ) -> Verdict:
        """``check`` on an event's fields, which the stream's lane reads once for the
        filter and the state (an attribute of a decoded event costs a generic lookup).

        The common cases (a cached user agent, an IP or session known to share the
        cookie's visitor) are inlined here: this runs for every event of the stream.
        """
        self._checked += 1
        if ts > self._now:
            self._now = ts
        if not self._enabled:
            return _HUMAN
        if self._deny and ip in self._deny:  # most have none: do not hash every ip
            return self._rule_hit(self._denied, ip or "", ts, "deny:ip")
        # The agent this cookie's visitor last passed with needs no rule check (a string
        # comparison, where a lookup hashes the whole agent)
        known = None if cookie is None else self._cookie_entries.get(cookie)
        if known is None or not ua or ua != known.agent:
            ua_reason = self._ua_cache.get(ua or "")
            if ua_reason is None:
                ua_reason = self._ua.reason(ua)
            if ua_reason:
                return self._rule_hit(self._agents, ua or "", ts, ua_reason)
        bits = _BITS[kind]
        by_cookie = by_ip = by_session = ""
        visitor = None
        if cookie is not None:
            by_cookie = self._cookies.observe(cookie, ts, item, bits)
            visitor = self._cookies.current
            if ua:
                visitor.agent = ua
            # An IP or session seen with this cookie only shares its visitor, observed
            # just now. The visitor remembers an IP and a session known to: no lookup.
            if ip == visitor.via_ip:
                ip = None
            if session == visitor.via_session:
                session = None
        if ip is not None:
            entry = self._ip_entries.get(ip)
            if entry is None or entry is not visitor:
                by_ip = self._ips.observe(ip, ts, item, bits, cookie, visitor)
            else:
                entry.via_ip = ip
        if session is not None:
            entry = self._session_entries.get(session)
            if entry is None or entry is not visitor:
                by_session = self._sessions.observe(session, ts, item, bits, cookie, visitor)
            else:
                entry.via_session = session
        if not (by_cookie or by_ip or by_session):
            return _HUMAN
        which = (by_cookie, by_ip, by_session)
        verdict = self._verdicts.get(which)
        if verdict is None:
            verdict = self._verdicts[which] = Verdict(True, tuple(r for r in which if r))
        self._flagged += 1
        for reason in verdict.reasons:
            self._reasons[reason] = self._reasons.get(reason, 0) + 1
        return verdict

    def _rule_hit(self, table: dict[str, _Hit], key: str, ts: int, reason: str) -> Verdict:
        hit = table.get(key)
        if hit is None:
            if len(table) >= self.config.max_tracked:
                evict_least_recent(table, self._keep)
            hit = table[key] = _Hit(ts, reason)
        hit.events += 1
        if ts > hit.last:
            hit.last = ts
        self._flagged += 1
        self._reasons[reason] = self._reasons.get(reason, 0) + 1
        verdict = self._verdicts.get((reason, "", ""))
        if verdict is None:
            verdict = self._verdicts[(reason, "", "")] = Verdict(True, (reason,))
        return verdict

    def verdicts(self, limit: int = 100) -> list[BotRecord]:
        """Visitors flagged now (at the latest event time seen), most recently seen first."""
        now = self._now
        rule_tables: tuple[tuple[KeyKind, dict[str, _Hit]], ...] = (
            ("user_agent", self._agents),
            ("ip", self._denied),
        )
        records = [
            BotRecord(
                kind=kind, key=key, reasons=(hit.reason,), first_seen_ms=hit.first,
                last_seen_ms=hit.last, events=hit.events, flagged_until_ms=hit.last + self._ttl,
            )
            for kind, table in rule_tables
            for key, hit in table.items()
            if hit.last + self._ttl >= now
        ]  # fmt: skip
        for tracker in (self._cookies, self._ips, self._sessions):
            records += [
                BotRecord(
                    kind=tracker.kind, key=key, reasons=v.reasons, first_seen_ms=v.first,
                    last_seen_ms=v.last, events=v.events, flagged_until_ms=v.until,
                )
                for key, v in tracker.flagged(now)
            ]  # fmt: skip
        records.sort(key=lambda r: (-r.last_seen_ms, r.kind, r.key))
        return records[: max(limit, 0)]

    def stats(self) -> dict[str, int]:
        """Events checked and flagged, and flagged events per reason (``reason:rate:cookie``)."""
        out = {"checked": self._checked, "flagged": self._flagged}
        out.update((f"reason:{r}", n) for r, n in sorted(self._reasons.items()))
        return out

    def to_state(self) -> dict[str, Any]:
        """A snapshot as plain builtins, the same bytes for the same history."""
        return {
            "version": _STATE_VERSION,
            "now_ms": self._now,
            "checked": self._checked,
            "flagged": self._flagged,
            "reasons": dict(sorted(self._reasons.items())),
            "cookie": self._cookies.to_state(),
            "ip": self._ips.to_state(self._cookies),
            "session": self._sessions.to_state(self._cookies),
            "user_agent_hits": _hit_rows(self._agents),
            "deny_hits": _hit_rows(self._denied),
        }

    @classmethod
    def from_state(
        cls, config: BotConfig, state: object, *, ip_hash_salt: str | None = None
    ) -> BotFilter:
        """A filter that continues exactly where ``to_state`` left off."""
        self = cls(config, ip_hash_salt=ip_hash_salt)
        try:
            self._load(state)
        except (KeyError, TypeError, ValueError) as exc:
            raise HotshelfError(f"bot filter state cannot be restored: {exc}") from None
        return self

    def _load(self, state: Any) -> None:
        if state["version"] != _STATE_VERSION:
            raise ValueError(f"unknown state version {state['version']!r}")
        self._now, self._checked = int(state["now_ms"]), int(state["checked"])
        self._flagged = int(state["flagged"])
        self._reasons = {str(r): int(n) for r, n in state["reasons"].items()}
        self._cookies.load_state(state["cookie"])
        self._ips.load_state(state["ip"], self._cookies)
        self._sessions.load_state(state["session"], self._cookies)
        self._agents = _load_hits(state["user_agent_hits"])
        self._denied = _load_hits(state["deny_hits"])


def _hit_rows(table: dict[str, _Hit]) -> list[list[Any]]:
    return [[k, h.first, h.last, h.events, h.reason] for k, h in sorted(table.items())]


def _load_hits(rows: list[list[Any]]) -> dict[str, _Hit]:
    table = {}
    for key, first, last, events, reason in rows:
        hit = table[str(key)] = _Hit(int(first), str(reason))
        hit.last, hit.events = int(last), int(events)
    return table
