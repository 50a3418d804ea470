"""Experiment arms by stable hash, explicit overrides, and the impression event."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotshelf.config import ExperimentsConfig, VariantConfig
from hotshelf.errors import ValidationError
from hotshelf.events import EventType, decode_stored_event, encode_stored_event
from hotshelf.recommend import Recommendation, Recommendations, RecommendRequest, Route
from hotshelf.recommend._experiments import VariantAssigner, impression_event, new_impression_id

KEYS = [f"cookie-{i}" for i in range(20_000)]


def arms(*weights: float, salt: str = "hotshelf") -> ExperimentsConfig:
    variants = [VariantConfig(name=f"arm{i}", weight=w) for i, w in enumerate(weights)]
    return ExperimentsConfig(salt=salt, variants=variants)


@given(key=st.text(min_size=1, max_size=64), salt=st.text(max_size=100))
def test_the_same_visitor_always_gets_the_same_arm(key: str, salt: str) -> None:
    config = arms(1, 2, 3, salt=salt)
    first = VariantAssigner(config).assign(key)
    assert VariantAssigner(config).assign(key) == first
    assert 0.0 <= VariantAssigner(config).point(key) < 1.0


def test_assignment_does_not_depend_on_the_process() -> None:
    # Python's own hash() is salted per process; the arm must not be
    script = (
        "from hotshelf.config import ExperimentsConfig, VariantConfig\n"
        "from hotshelf.recommend._experiments import VariantAssigner\n"
        "v = [VariantConfig(name='a', weight=1), VariantConfig(name='b', weight=3)]\n"
        "a = VariantAssigner(ExperimentsConfig(salt='s', variants=v))\n"
        "print(''.join(a.assign(f'cookie-{i}').name for i in range(300)))\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assigner = VariantAssigner(arms(1, 3, salt="s"))
    here = "".join("ab"[int(assigner.assign(f"cookie-{i}").name[-1])] for i in range(300))
    assert outputs == {here}


@settings(max_examples=15, deadline=None)
@given(weights=st.lists(st.floats(0.2, 10.0), min_size=1, max_size=4), salt=st.text(max_size=8))
def test_shares_match_the_weights(weights: list[float], salt: str) -> None:
    assigner = VariantAssigner(arms(*weights, salt=salt))
    counts = dict.fromkeys((f"arm{i}" for i in range(len(weights))), 0)
    for key in KEYS:
        counts[assigner.assign(key).name] += 1
    total = sum(weights)
    for i, weight in enumerate(weights):
        # 20,000 draws: one standard deviation of a share is at most 0.0036
        assert counts[f"arm{i}"] / len(KEYS) == pytest.approx(weight / total, abs=0.02)


def test_another_salt_reshuffles_visitors() -> None:
    one, other = VariantAssigner(arms(1, 1, salt="a")), VariantAssigner(arms(1, 1, salt="b"))
    moved = sum(one.assign(k) != other.assign(k) for k in KEYS[:2000])
    assert 800 < moved < 1200  # about half change arm under an independent hash


def test_named_arm_and_request_override() -> None:
    assigner = VariantAssigner(arms(1, 1))
    assert assigner.named("arm1").name == "arm1"
    cookie = "cookie-7"
    hashed = assigner.assign(cookie).name
    other = "arm0" if hashed == "arm1" else "arm1"
    assert assigner.select(RecommendRequest(cookie_id=cookie)).name == hashed
    assert assigner.select(RecommendRequest(cookie_id=cookie, variant=other)).name == other


def test_unknown_variant_is_a_422_naming_the_arms() -> None:
    assigner = VariantAssigner(arms(1, 1))
    with pytest.raises(ValidationError) as caught:
        assigner.select(RecommendRequest(cookie_id="c", variant="nope"))
    error = caught.value
    assert error.status == 422
    [problem] = error.problems
    assert problem.path == "variant"
    assert "'nope'" in problem.problem
    assert "'arm0'" in problem.problem
    assert "'arm1'" in problem.problem


def test_impression_ids_are_fresh_hex() -> None:
    ids = {new_impression_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_impression_ids_never_let_go_of_the_gil(monkeypatch: pytest.MonkeyPatch) -> None:
    # os.urandom releases the GIL: a request calling it waits for busy threads.
    def no_urandom(n: int) -> bytes:
        raise AssertionError("os.urandom called for an impression id")

    monkeypatch.setattr(os, "urandom", no_urandom)
    assert len({new_impression_id() for _ in range(100)}) == 100


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_draws_other_impression_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its ids go to the parent
        os.close(read)
        os.write(write, "".join(new_impression_id() for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        text = pipe.read().decode()
    os.waitpid(pid, 0)
    child = {text[i : i + 32] for i in range(0, len(text), 32)}
    mine = {new_impression_id() for _ in range(50)}
    assert len(child) == 50
    assert not child & mine


def served() -> Recommendations:
    items = [
        Recommendation(item_id="i1", score=0.9, route=Route.BROWSING, reason="like i0"),
        Recommendation(item_id="i2", score=0.5, route=Route.PERSONAL, reason="for you"),
        Recommendation(item_id="i3", score=0.1, route=Route.GENERIC, reason="popular"),
    ]
    return Recommendations(
        impression_id=new_impression_id(),
        items=items,
        routes=[Route.BROWSING, Route.PERSONAL, Route.GENERIC],
        variant="arm1",
        model_version="cf-7",
    )


def test_impression_event_records_the_served_list() -> None:
    request = RecommendRequest(
        cookie_id="c1", user_id="u1", session_id="s1", location="Oslo", device="mobile"
    )
    answer = served()
    event = impression_event(request, answer, now_ms=1_700_000_000_000)
    decoded = decode_stored_event(encode_stored_event(event))  # as the log gives it back
    assert decoded == event
    assert event.type is EventType.IMPRESSION
    assert event.event_id == answer.impression_id
    assert event.ts_ms == event.received_ms == 1_700_000_000_000
    assert (event.cookie_id, event.user_id, event.session_id) == ("c1", "u1", "s1")
    assert (event.location, event.device) == ("Oslo", "mobile")
    assert event.item_ids == ["i1", "i2", "i3"]
    assert event.properties == {
        "impression_id": answer.impression_id,
        "variant": "arm1",
        "routes": ["browsing", "personal", "generic"],
        "item_routes": ["browsing", "personal", "generic"],
        "model_version": "cf-7",
    }


def test_impression_event_is_stamped_now_by_default() -> None:
    before = time.time_ns() // 1_000_000
    event = impression_event(RecommendRequest(cookie_id="c"), served())
    assert before <= event.ts_ms <= time.time_ns() // 1_000_000
    assert event.user_agent is None
    assert event.ip_hash is None
