"""``CollaborativeModel`` with real ``implicit`` on a simulated store: it is deterministic,
both algorithms learn, fold-in follows the folded items, saves round-trip, and damaged
saves are refused clearly."""

from __future__ import annotations

import collections
import json
import threading
from pathlib import Path

import msgspec
import numpy as np
import pytest
import scipy.sparse
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from hotshelf.config import CollaborativeConfig
from hotshelf.errors import ConfigError, ValidationError
from hotshelf.log import FileLog
from hotshelf.recommend._cf_check import held_out_check
from hotshelf.recommend._collaborative import CollaborativeModel, load_current, train_from_logs
from hotshelf.recommend._interactions import Interactions, read_interactions
from hotshelf.simulation import SimConfig, StoreSimulator
from tests.recommend.test_interactions import append
from tests.stream.simulated import config, stored

# On this simulated store ALS needs strong regularisation: about 1,200 visitors with
# ten items each do not support 64 free factors at implicit's default 0.01.
ALS = CollaborativeConfig(algorithm="als", factors=32, regularization=20.0, seed=3)
BPR = CollaborativeConfig(algorithm="bpr", factors=64, iterations=100, seed=3)


class Store:
    def __init__(self, root: Path, sim: StoreSimulator, interactions: Interactions) -> None:
        self.root, self.interactions = root, interactions
        self.department = {item.item_id: item.category[0] for item in sim.catalog()}

    def items_of(self, department: str, count: int) -> list[str]:
        return [i for i in self.interactions.items if self.department[i] == department][:count]

    def share(self, recommended: list[tuple[str, float]], department: str) -> float:
        return sum(self.department[i] == department for i, _ in recommended) / len(recommended)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """40,000 events of a 300-item store with 1,000 visitors, bots included, in a log;
    50 events/s, so that a visitor's rate is a shopper's (the bot filter agrees)."""
    sim = StoreSimulator(SimConfig(seed=1, n_items=300, n_visitors=1000, events_per_s=50.0))
    root = tmp_path_factory.mktemp("cf")
    cfg = config(root)
    with FileLog(root / "events", cfg.log) as log:
        append(log, list(stored(sim.events(40_000))))
        return Store(root, sim, read_interactions(cfg, log))


@pytest.fixture(scope="module")
def als(store: Store) -> CollaborativeModel:
    return CollaborativeModel.fit(store.interactions, ALS)


@pytest.fixture(scope="module")
def bpr(store: Store) -> CollaborativeModel:
    return CollaborativeModel.fit(store.interactions, BPR)


@pytest.mark.parametrize("settings", [ALS, BPR], ids=["als", "bpr"])
def test_two_fits_on_the_same_data_give_the_same_factors(store: Store, settings: object) -> None:
    assert isinstance(settings, CollaborativeConfig)
    first = CollaborativeModel.fit(store.interactions, settings)
    second = CollaborativeModel.fit(store.interactions, settings)
    for a, b in zip(first.factors, second.factors, strict=True):
        assert np.array_equal(a, b)
    assert first.version.split("-")[::2] == second.version.split("-")[::2]  # algorithm, hash
    other_seed = msgspec.structs.replace(settings, seed=settings.seed + 1)
    third = CollaborativeModel.fit(store.interactions, other_seed)
    assert not np.array_equal(first.factors[1], third.factors[1])
    assert first.version.split("-")[2] != third.version.split("-")[2]


def test_the_model_records_what_it_was_trained_on(store: Store, als: CollaborativeModel) -> None:
    manifest = als.manifest
    assert als.version.startswith("als-")
    assert als.offsets == {"events": 40_000}
    assert (manifest.visitors, manifest.items) == (len(store.interactions.visitors), 300)
    assert manifest.interactions == store.interactions.n_interactions
    assert manifest.settings == ALS
    assert als.factors[0].shape == (manifest.visitors, 32)


def test_als_beats_popularity_on_held_out_last_items(store: Store) -> None:
    report = held_out_check(store.interactions, ALS)
    assert report is not None
    assert report.visitors > 500
    assert report.recall > report.popularity_recall + 0.02
    assert report.popularity_recall > 0.2  # the baseline is a real one


def test_bpr_learns_far_beyond_chance(store: Store) -> None:
    report = held_out_check(store.interactions, msgspec.structs.replace(BPR, iterations=15))
    assert report is not None
    chance = report.k / len(store.interactions.items)
    # on this store BPR's ranking is mostly its item bias: popularity, learned
    assert report.recall > 8 * chance
    assert report.recall > 0.85 * report.popularity_recall


def test_training_on_nothing_is_refused() -> None:
    empty = Interactions([], [], (np.zeros(0, np.int32),) * 2 + (np.zeros(0, np.float32),))
    with pytest.raises(ValidationError, match="no feedback events"):
        CollaborativeModel.fit(empty, ALS)


# -- serving ----------------------------------------------------------------------


def test_recommendations_leave_out_seen_and_excluded_items(
    store: Store, als: CollaborativeModel
) -> None:
    visitor = store.interactions.visitors[0]
    seen = set(store.interactions.row(visitor))
    recs = als.recommend(visitor, 20)
    assert len(recs) == 20
    assert not seen & {i for i, _ in recs}
    scores = [s for _, s in recs]
    assert scores == sorted(scores, reverse=True)
    top = recs[0][0]
    assert top not in {i for i, _ in als.recommend(visitor, 20, exclude=[top, "unknown"])}
    with_seen = als.recommend(visitor, 300, exclude_seen=False)
    assert len(with_seen) == 300
    assert len(als.recommend(visitor, 1000)) == 300 - len(seen)
    assert als.recommend(visitor, 0) == []
    assert als.recommend("never-seen", 10) == []
    assert als.recommend_for_items({"unknown": 1.0}, 10) == []


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_fold_in_moves_recommendations_toward_the_folded_items(
    store: Store, name: str, request: pytest.FixtureRequest
) -> None:
    model: CollaborativeModel = request.getfixturevalue(name)
    base = collections.Counter(store.department[i] for i in store.interactions.items)
    shares = []
    for department in ("Beauty", "Books", "Electronics", "Fashion"):
        folded = dict.fromkeys(store.items_of(department, 5), 1.0)
        visitor = store.interactions.visitors[1]
        before = store.share(model.recommend(visitor, 10), department)
        after = model.recommend_for_items(folded, 10)
        shares.append(store.share(after, department))
        assert shares[-1] > max(before, base[department] / 300)
        assert not set(folded) & {i for i, _ in after}  # the folded items count as seen
    assert np.mean(shares) >= 2 * 40 / 300  # twice a department's share of the catalog


def test_als_fold_in_is_implicits_own_least_squares_step(
    store: Store, als: CollaborativeModel
) -> None:
    visitor = store.interactions.visitors[2]
    row = store.interactions.row(visitor)
    ours = als.recommend_for_items(row, 10)
    columns = [store.interactions.item_index[i] for i in row]
    confidence = [1.0 + ALS.alpha * w for w in row.values()]
    user_items = scipy.sparse.csr_matrix(
        (confidence, ([0] * len(columns), columns)), shape=(1, 300), dtype=np.float32
    )
    with threadpool_limits(1, "blas"):  # or implicit warns (an error under pytest)
        implicit = AlternatingLeastSquares(factors=32, regularization=ALS.regularization)
        implicit.item_factors = als.factors[1].copy()
        expected = implicit.recalculate_user(0, user_items)
    scores = als.factors[1] @ expected
    for item, score in ours:
        assert score == pytest.approx(scores[store.interactions.item_index[item]], rel=1e-3)


def test_fold_in_uses_the_most_recent_items_and_ignores_unknown_ones(
    store: Store, als: CollaborativeModel
) -> None:
    limit = ALS.max_fold_in_items
    books = dict.fromkeys(store.items_of("Books", 3), 1.0)
    older = dict.fromkeys(store.items_of("Electronics", 40), 1.0)
    # unknown items (new since training) take their place among the most recent
    unknown = {f"new-{n}": 1.0 for n in range(limit - len(books))}
    assert als.recommend_for_items(older | unknown | books, 10) == als.recommend_for_items(
        books, 10
    )
    assert als.recommend_for_items(older | books, 10) != als.recommend_for_items(books, 10)
    # nothing known with a positive weight: nothing to fold in
    assert als.recommend_for_items({"unknown": 1.0, next(iter(books)): 0.0}, 10) == []


def test_folding_in_and_serving_from_many_threads_give_the_answers_given_alone(
    store: Store,
) -> None:
    model = CollaborativeModel.fit(store.interactions, ALS)
    items = list(store.interactions.items[:60])
    alone = {n: model.recommend_for_items({items[n % 60]: 1.0}, 5) for n in range(60)}
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for n in range(150):
                k = (worker * 7 + n) % 60
                assert model.recommend_for_items({items[k]: 1.0}, 5) == alone[k]
                model.recommend(store.interactions.visitors[n], 5)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []  # and every answer was the one given alone


# -- persistence ------------------------------------------------------------------


def test_save_and_load_round_trip(
    tmp_path: Path, store: Store, als: CollaborativeModel, bpr: CollaborativeModel
) -> None:
    assert load_current(tmp_path) is None
    for model in (als, bpr):
        path = model.save(tmp_path)
        assert path == tmp_path / "models" / "cf" / model.version
        loaded = load_current(tmp_path)
        assert loaded is not None
        assert loaded.manifest == msgspec.structs.replace(
            model.manifest, files=loaded.manifest.files
        )
        assert (loaded.visitors, loaded.items) == (model.visitors, model.items)
        for a, b in zip(loaded.factors, model.factors, strict=True):
            assert np.array_equal(a, b)
        visitor = store.interactions.visitors[5]
        assert loaded.recommend(visitor, 10) == model.recommend(visitor, 10)
        folded = store.interactions.row(store.interactions.visitors[6])
        assert loaded.recommend_for_items(folded, 10) == model.recommend_for_items(folded, 10)
    assert (tmp_path / "models" / "cf" / "current").read_text().strip() == bpr.version


def test_only_the_newest_versions_are_kept(tmp_path: Path, store: Store) -> None:
    saved = []
    for seed in range(4):
        settings = msgspec.structs.replace(ALS, seed=seed, iterations=1)
        model = CollaborativeModel.fit(store.interactions, settings)
        # one second apart, as scheduled retraining would be at least
        manifest = msgspec.structs.replace(model.manifest, version=f"als-2025010{seed}T000000Z-ab")
        model.manifest = manifest
        model.save(tmp_path, keep=2)
        saved.append(manifest.version)
    left = sorted(p.name for p in (tmp_path / "models" / "cf").iterdir() if p.is_dir())
    assert left == saved[2:]
    assert not list((tmp_path / "models" / "cf").glob(".*.tmp"))


@pytest.fixture
def saved(tmp_path: Path, als: CollaborativeModel) -> Path:
    return als.save(tmp_path)


def test_a_corrupt_manifest_is_a_clear_error(tmp_path: Path, saved: Path) -> None:
    (saved / "manifest.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad manifest\.json"):
        load_current(tmp_path)
    (saved / "manifest.json").unlink()
    with pytest.raises(ConfigError, match="no collaborative model"):
        CollaborativeModel.load(saved)


def test_a_damaged_factor_file_is_refused(tmp_path: Path, saved: Path) -> None:
    data = bytearray((saved / "item_factors.npy").read_bytes())
    data[-5] ^= 0xFF
    (saved / "item_factors.npy").write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"item_factors\.npy is damaged"):
        load_current(tmp_path)


def test_factors_that_do_not_fit_the_ids_are_refused(tmp_path: Path, saved: Path) -> None:
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["settings"]["factors"] = 16
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="item factors has shape"):
        load_current(tmp_path)


def test_a_current_pointer_to_nowhere_is_a_clear_error(tmp_path: Path, saved: Path) -> None:
    (saved.parent / "current").write_text("als-gone\n")
    with pytest.raises(ConfigError, match="no collaborative model"):
        load_current(tmp_path)
    (saved.parent / "current").write_text("../../etc\n")
    with pytest.raises(ConfigError, match="names no model version"):
        load_current(tmp_path)


def test_train_from_logs_reads_both_logs_to_their_ends(tmp_path: Path, store: Store) -> None:
    cfg = config(store.root)
    cfg = msgspec.structs.replace(cfg, recommend=msgspec.structs.replace(cfg.recommend, cf=ALS))
    with (
        FileLog(store.root / "events", cfg.log) as events,
        FileLog(tmp_path / "b", cfg.log) as batch,
    ):
        model = train_from_logs(cfg, events, batch)
    assert model.offsets == {"events": 40_000, "events.batch": 0}
    reference = CollaborativeModel.fit(store.interactions, ALS)
    assert np.array_equal(model.factors[1], reference.factors[1])
