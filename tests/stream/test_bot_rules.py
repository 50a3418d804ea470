"""The rule layer: bot user agents, empty agents, the IP deny list."""

from __future__ import annotations

import pytest

from hotshelf.config import BotConfig, load_config
from hotshelf.errors import ConfigError
from hotshelf.events import EventType, IpHasher, StoredEvent
from hotshelf.simulation._vocabulary import BROWSER_AGENTS, CRAWLERS
from hotshelf.stream._bot_filter import BotFilter
from hotshelf.stream._bot_rules import BOT_USER_AGENTS, DenyList, UserAgentRules

BOT_AGENTS = {
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)": "googlebot",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)": "bingbot",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)": "yandexbot",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)": (
        "baiduspider"
    ),
    "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)": "duckduckbot",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)": "ahrefsbot",
    "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)": "semrushbot",
    "python-requests/2.31.0": "python-requests",
    "curl/8.4.0": "curl",
    "Wget/1.21.4": "wget",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/124.0.0.0 Safari/537.36": "headlesschrome",
    "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) "
    "PhantomJS/2.1.1 Safari/538.1": "phantomjs",
    "Scrapy/2.11.0 (+https://scrapy.org)": "scrapy",
    "Go-http-client/2.0": "go-http-client",
    "Java/17.0.2": "java",
    "okhttp/4.12.0": "okhttp",
    "Mozilla/5.0 (compatible; MyShopMonitor-Bot/1.0)": "bot",
    "PriceCrawler 2.1": "bot",
    "acme-spider/0.3": "bot",
}

HUMAN_AGENTS = [agent for agents in BROWSER_AGENTS.values() for agent in agents] + [
    # "bot" inside a word is no bot: Cubot phones, "Robotic" in a product name.
    "Mozilla/5.0 (Linux; Android 10; CUBOT P40) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 12; Botswana Edition) AppleWebKit/537.36 Mobile Safari",
]


@pytest.mark.parametrize(("agent", "name"), sorted(BOT_AGENTS.items()))
def test_known_bot_agents_name_the_bot(agent: str, name: str) -> None:
    assert UserAgentRules(BotConfig()).reason(agent) == f"ua:{name}"


def test_every_listed_pattern_is_exercised() -> None:
    assert {name for name, _ in BOT_USER_AGENTS} - set(BOT_AGENTS.values()) <= {
        "applebot", "facebookexternalhit", "python-urllib", "aiohttp", "libwww-perl",
    }  # fmt: skip


@pytest.mark.parametrize("agent", HUMAN_AGENTS)
def test_browsers_are_not_bots(agent: str) -> None:
    assert UserAgentRules(BotConfig()).reason(agent) == ""


def test_simulated_crawlers_are_all_known() -> None:
    rules = UserAgentRules(BotConfig())
    assert all(rules.reason(c.user_agent).startswith("ua:") for c in CRAWLERS)


@pytest.mark.parametrize("agent", [None, "", "   "])
def test_an_empty_agent_is_a_bot_unless_switched_off(agent: str | None) -> None:
    assert UserAgentRules(BotConfig()).reason(agent) == "ua:empty"
    assert UserAgentRules(BotConfig(flag_empty_user_agent=False)).reason(agent) == ""


def test_extra_patterns_are_custom_reasons() -> None:
    rules = UserAgentRules(BotConfig(extra_user_agents=[r"^AcmeMonitor/\d"]))
    assert rules.reason("AcmeMonitor/3 (uptime)") == "ua:custom"
    assert rules.reason("Mozilla/5.0 AcmeMonitor/3") == ""


def test_the_agent_cache_is_bounded_and_changes_nothing() -> None:
    rules = UserAgentRules(BotConfig(ua_cache_size=3))
    agents = [*BOT_AGENTS, *HUMAN_AGENTS]
    first = [rules.reason(a) for a in agents]
    assert len(rules.cache) <= 3
    assert [rules.reason(a) for a in agents] == first


def test_deny_list_hashes_ips_like_the_log() -> None:
    config = BotConfig(deny_ips=["203.0.113.9", "2001:DB8::1"])
    hashes = DenyList(config, "pepper").hashes
    hasher = IpHasher("pepper")
    assert hasher("203.0.113.9") in hashes
    assert hasher("2001:db8::1") in hashes  # the canonical spelling too
    assert hasher("203.0.113.10") not in hashes
    assert IpHasher("hotshelf")("203.0.113.9") not in hashes  # another salt, another hash


def test_deny_ips_need_the_salt() -> None:
    with pytest.raises(ConfigError, match="ip_hash_salt"):
        DenyList(BotConfig(deny_ips=["203.0.113.9"]), None)


def test_deny_ip_hashes_are_checked() -> None:
    good = IpHasher("hotshelf")("198.51.100.7")
    assert DenyList(BotConfig(deny_ip_hashes=[good.upper()]), None).hashes == {good}
    with pytest.raises(ConfigError, match="32-digit hex"):
        DenyList(BotConfig(deny_ip_hashes=["not-a-hash"]), None)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ('bots.deny_ips=["10.0.0.0/8"]', "only exact addresses"),
        ('bots.deny_ips=["10.0.0.300"]', "does not appear to be an IP"),
        ('bots.extra_user_agents=["(unclosed"]', "extra_user_agents"),
        ("bots.max_tracked=0", "max_tracked"),
        ("bots.rate_window_s=0", "rate_window_s"),
    ],
)
def test_bad_bot_settings_are_config_errors(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(overrides=[override], environ={})


def test_rule_verdicts_from_the_filter() -> None:
    salt = "pepper"
    config = BotConfig(deny_ips=["203.0.113.9"])
    bots = BotFilter(config, ip_hash_salt=salt)
    browser = BROWSER_AGENTS["desktop"][0]

    def event(n: int, agent: str | None, ip: str) -> StoredEvent:
        return StoredEvent(
            event_id=f"e{n}", type=EventType.VIEW, ts_ms=1000 * n, received_ms=1000 * n,
            cookie_id=f"c{n}", item_id="sku-1", user_agent=agent, ip_hash=IpHasher(salt)(ip),
        )  # fmt: skip

    assert bots.check(event(1, browser, "198.51.100.1")).reasons == ()
    assert bots.check(event(2, "curl/8.4.0", "198.51.100.1")).reasons == ("ua:curl",)
    assert bots.check(event(3, browser, "203.0.113.9")).reasons == ("deny:ip",)
    assert bots.check(event(4, None, "198.51.100.1")).reasons == ("ua:empty",)
    records = {(r.kind, r.reasons) for r in bots.verdicts()}
    assert records == {
        ("user_agent", ("ua:curl",)),
        ("ip", ("deny:ip",)),
        ("user_agent", ("ua:empty",)),
    }
    assert bots.stats() == {
        "checked": 4, "flagged": 3,
        "reason:deny:ip": 1, "reason:ua:curl": 1, "reason:ua:empty": 1,
    }  # fmt: skip
