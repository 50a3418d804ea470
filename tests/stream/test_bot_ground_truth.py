"""Bot verdicts scored against the simulator's ground truth, per event and per bot kind.

Ten minutes of a simulated store at 500 events/s with its default bots (crawlers,
slow bots) plus a strong click-spam burst. Run with ``-s`` to see the scores.
"""

from __future__ import annotations

import collections

import pytest

from hotshelf.config import BotConfig, EventsConfig
from hotshelf.events import normalize
from hotshelf.simulation import Label, SimConfig, SpamBurst, StoreSimulator
from hotshelf.stream._answers import Verdict
from hotshelf.stream._bot_filter import BotFilter

SIM = SimConfig(
    seed=5,
    spam_bursts=(SpamBurst(at_s=120.0, multiplier=100.0, n_items=3, n_cookies=4),),
)
DURATION_S = 600.0


class Scores:
    def __init__(self, labels: list[Label], verdicts: list[Verdict]) -> None:
        self.events = collections.Counter(labels)
        self.flagged = collections.Counter(
            label for label, v in zip(labels, verdicts, strict=True) if v.is_bot
        )
        self.reasons: dict[Label, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        for label, v in zip(labels, verdicts, strict=True):
            for reason in v.reasons:
                self.reasons[label][reason.split(":")[0]] += 1

    def recall(self, label: Label) -> float:
        return self.flagged[label] / self.events[label]

    @property
    def bots(self) -> int:
        return sum(n for label, n in self.events.items() if label is not Label.HUMAN)

    @property
    def true_positives(self) -> int:
        return sum(n for label, n in self.flagged.items() if label is not Label.HUMAN)

    @property
    def precision(self) -> float:
        return self.true_positives / max(1, sum(self.flagged.values()))

    def table(self) -> str:
        rows = [f"{'label':<11} {'events':>8} {'flagged':>8} {'share':>7}  reasons"]
        for label in Label:
            reasons = dict(self.reasons[label].most_common())
            rows.append(
                f"{label.value:<11} {self.events[label]:>8} {self.flagged[label]:>8} "
                f"{self.recall(label):>7.2%}  {reasons}"
            )
        rows.append(
            f"all bots: precision {self.precision:.4f}, "
            f"recall {self.true_positives / self.bots:.4f}"
        )
        return "\n".join(rows)


@pytest.fixture(scope="module")
def scores() -> Scores:
    sim = StoreSimulator(SIM)
    generated = list(sim.events(duration_s=DURATION_S))
    stored = normalize([s.event for s in generated], SIM.start_ms, EventsConfig())
    bots = BotFilter(BotConfig())
    result = Scores([s.label for s in generated], [bots.check(e) for e in stored])
    print("\n" + result.table())
    return result


def test_overall_precision_and_recall(scores: Scores) -> None:
    assert scores.precision >= 0.97
    assert scores.true_positives / scores.bots >= 0.85


def test_people_are_almost_never_flagged(scores: Scores) -> None:
    assert scores.recall(Label.HUMAN) <= 0.001


def test_every_crawler_event_is_caught_by_its_agent(scores: Scores) -> None:
    assert scores.recall(Label.CRAWLER) == 1.0
    assert set(scores.reasons[Label.CRAWLER]) == {"ua"}


def test_click_spam_is_caught_within_its_first_events(scores: Scores) -> None:
    assert scores.recall(Label.CLICK_SPAM) >= 0.8
    assert set(scores.reasons[Label.CLICK_SPAM]) <= {"spam", "rate", "impossible"}


def test_slow_bots_are_caught_by_their_regularity(scores: Scores) -> None:
    # A slow bot views every 30 s; five gaps of evidence (2.5 min) come before the
    # flag, so over ten minutes at most about three quarters of its views are caught.
    assert scores.recall(Label.SLOW_BOT) >= 0.7
    assert set(scores.reasons[Label.SLOW_BOT]) == {"regular"}
