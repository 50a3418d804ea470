"""The demo's last act: ``/v1/recommend`` for the three kinds of shopper, with titles.

While the demo streams the simulated traffic in, ``Shoppers`` keeps a few real
visitors from it (humans only): a user who bought, and a session that viewed several
items. After the server has trained its collaborative model (``recommend.cf.retrain_s``
in the demo), ``recommend_examples`` asks for a brand-new visitor, that returning buyer,
that browsing session, and the buyer browsing now; then it clicks one recommendation
and shows the attributed click in ``/v1/metrics/online``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

from hotshelf.events import EventType
from hotshelf.simulation import SimEvent
from hotshelf.simulation._config import Label

__all__ = ["Shoppers", "recommend_examples"]

Call = Callable[..., tuple[int, Any]]
Show = Callable[[str, str, int, Any], None]
MODEL_WAIT_S = 180.0


class Shoppers:
    """Real visitors of the simulated traffic to ask about: the last user who bought (else
    the most active user), and the last session that viewed two items or more."""

    def __init__(self) -> None:
        self.session: tuple[str, str, list[str]] | None = None  # (session, cookie, viewed)
        self.place: tuple[str, str] = ("London, GB", "mobile")
        self._buyer: tuple[str, str] | None = None
        self._active: dict[tuple[str, str], int] = {}  # (user, cookie) -> events
        self._views: dict[str, list[str]] = {}

    @property
    def buyer(self) -> tuple[str, str] | None:
        """(user_id, cookie_id) of a returning shopper."""
        if self._buyer is not None or not self._active:
            return self._buyer
        return max(self._active, key=lambda key: (self._active[key], key))

    def see(self, sim_event: SimEvent) -> None:
        event = sim_event.event
        if sim_event.label is not Label.HUMAN or event.cookie_id is None:
            return
        if event.location and event.device:
            self.place = (event.location, event.device)
        if event.user_id and event.type is not EventType.IMPRESSION:
            key = (event.user_id, event.cookie_id)
            self._active[key] = self._active.get(key, 0) + 1
            if event.type is EventType.PURCHASE:
                self._buyer = key
        if event.type is EventType.VIEW and event.session_id and event.item_id:
            viewed = self._views.setdefault(event.session_id, [])
            viewed.append(event.item_id)
            if len(viewed) >= 2:
                self.session = (event.session_id, event.cookie_id, list(viewed))
        if len(self._views) > 10_000 or len(self._active) > 10_000:  # bounded memory
            self._views.clear()
            self._active.clear()


def _ask(call: Call, show: Show, title: str, context: dict[str, Any],
         titles: dict[str, str], console: Console) -> dict[str, Any]:  # fmt: skip
    status, body = call("POST", "/v1/recommend", json.dumps(context).encode())
    show(title, "POST /v1/recommend " + json.dumps(context), status, body)
    if status == 200:
        for rank, item in enumerate(body["items"][:5], start=1):
            console.print(f"  #{rank} {titles.get(item['item_id'], '?')}  [{item['route']}] "
                          f"{item['reason']}", highlight=False)  # fmt: skip
    return body if isinstance(body, dict) else {}


def _wait_for_model(call: Call, context: dict[str, Any], console: Console) -> None:
    deadline = time.monotonic() + MODEL_WAIT_S
    with console.status("training the collaborative model on the log (implicit ALS)"):
        while time.monotonic() < deadline:
            status, body = call("POST", "/v1/recommend", json.dumps(context).encode())
            if status == 200 and body.get("model_version"):
                console.print(f"model {body['model_version']} is serving")
                return
            time.sleep(1.0)
    console.print("[yellow]no model yet: personal picks are left out below[/]")


def recommend_examples(
    call: Call, show: Show, shoppers: Shoppers, titles: dict[str, str], console: Console
) -> None:
    """Ask for each kind of shopper, click one answer, show the attribution."""
    location, device = shoppers.place
    new = {"cookie_id": "demo-first-visit", "location": location, "device": device, "k": 5}
    asks: list[tuple[str, dict[str, Any]]] = [
        ("a new visitor: generic picks for where they are", new)
    ]
    if shoppers.buyer is not None:
        user, cookie = shoppers.buyer
        returning = {"cookie_id": cookie, "user_id": user, "k": 5}
        _wait_for_model(call, returning, console)
        asks.append(("a returning buyer: collaborative filtering", returning))
    if shoppers.session is not None:
        session, cookie, viewed = shoppers.session
        browsing = {"cookie_id": cookie, "session_id": session, "current_item_id": viewed[-1],
                    "k": 5}  # fmt: skip
        asks.append((f"browsing now, looking at {titles.get(viewed[-1], '?')!r}", browsing))
        if shoppers.buyer is not None:
            blend = {**returning, "current_item_id": viewed[-1], "k": 5}
            asks.append(("a returning buyer browsing now: routes blended", blend))
    answers = [_ask(call, show, title, context, titles, console) for title, context in asks]
    _click(call, show, answers[0], new)


def _click(call: Call, show: Show, answer: dict[str, Any], context: dict[str, Any]) -> None:
    if not answer.get("items"):
        return
    click = {"type": "click", "event_id": "demo-click-1", "cookie_id": context["cookie_id"],
             "item_id": answer["items"][0]["item_id"],
             "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148",
             "properties": {"impression_id": answer["impression_id"]}}  # fmt: skip
    call("POST", "/v1/events", json.dumps(click).encode())
    deadline = time.monotonic() + 10
    while True:
        status, body = call("GET", "/v1/metrics/online")
        clicks = sum(v.get("clicks", 0) for v in body.get("variants", [])) if status == 200 else 0
        if clicks or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    show("the click, attributed to its impression and arm", "GET /v1/metrics/online", status, body)
