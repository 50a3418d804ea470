"""``EmbeddingReplica`` and ``read_vectors``: a follower answers what the server's
``EmbeddingService`` answers, follows its changes, writes nothing and takes no lock.

The server (the "leader") is a real ``EmbeddingService`` on a real file log and the
real stores; only its encoder is a stand-in (the ONNX model is not what is tested).
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from hotshelf._files import lock_directory
from hotshelf.catalog import CatalogView
from hotshelf.config import Config, EmbeddingsConfig, LogConfig
from hotshelf.embeddings import EmbeddingReplica, EmbeddingService, MmapTier, _mmap_tier
from hotshelf.embeddings._mmap_tier import read_vectors
from hotshelf.errors import ConflictError, UnavailableError
from hotshelf.events import Item
from hotshelf.log import FileLog
from hotshelf.models import EMBEDDING_DIM
from tests.embeddings.data import DIM, keyed, unit_vectors


class FakeEncoder:
    """Stands in for the text encoder: a unit vector seeded by the text, so the same
    text always gets the same vector and another text another one."""

    dim = DIM
    version = "fake-1"

    def warm_up(self) -> None:
        pass

    def close(self) -> None:
        pass

    def predict(self, batch: Sequence[str]) -> np.ndarray:
        rows = [unit_vectors(1, seed=zlib.crc32(text.encode()))[0] for text in batch]
        return np.array(rows, dtype=np.float32).reshape(len(batch), DIM)


def items(ids: range, title: str = "Product") -> list[Item]:
    return [Item(item_id=f"i{i}", title=f"{title} {i}", category=["Shop"]) for i in ids]


class Leader:
    """The server's side: the embedding service, writing under ``config.data_dir``."""

    def __init__(self, config: Config, catalog_dir: Path) -> None:
        self.log = FileLog(catalog_dir, LogConfig(fsync=False))
        self.catalog = CatalogView(self.log)
        self.service = EmbeddingService(config, self.catalog, self.log)
        self.service.start(follow=False)

    def upsert(self, new: list[Item]) -> None:
        self.catalog.upsert(new)
        self.service.refresh()

    def delete(self, item_ids: list[str]) -> None:
        self.catalog.delete(item_ids)
        self.service.refresh()

    def close(self) -> None:
        self.service.close()
        self.log.close()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(
        data_dir=str(tmp_path / "data"),
        embeddings=EmbeddingsConfig(index="exact", refresh_s=0.02),
    )


@pytest.fixture
def leader(config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Leader]:
    monkeypatch.setattr("hotshelf.models.load_text_encoder", lambda *_, **__: FakeEncoder())
    server = Leader(config, tmp_path / "catalog")
    yield server
    server.close()


@pytest.fixture
def replica(config: Config) -> Iterator[EmbeddingReplica]:
    follower = EmbeddingReplica(config)
    yield follower
    follower.close()


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def assert_same_answers(
    replica: EmbeddingReplica, service: EmbeddingService, ids: list[str]
) -> None:
    ours, theirs = replica.lookup(ids), service.lookup(ids)
    assert ours.found.tolist() == theirs.found.tolist()
    assert np.array_equal(ours.vectors, theirs.vectors)
    assert ours.from_local.tolist() == ours.found.tolist()
    assert not ours.from_remote.any()
    assert not ours.degraded
    queries = theirs.vectors[theirs.found]
    excludes = [{i} for i, ok in zip(ids, theirs.found, strict=True) if ok]
    got = replica.nearest_many(queries, 5, excludes=excludes)
    want = service.nearest_many(queries, 5, excludes=excludes)
    assert [[s.item_id for s in row] for row in got] == [[s.item_id for s in row] for row in want]
    for got_row, want_row in zip(got, want, strict=True):
        assert [s.score for s in got_row] == pytest.approx([s.score for s in want_row], abs=1e-6)


def tree(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``directory``: (size, modification time)."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            stat = os.stat(Path(root) / name)
            out[str(Path(root, name).relative_to(directory))] = (stat.st_size, stat.st_mtime_ns)
    return out


def journal_rows(config: Config) -> dict[str, int]:
    data = (config.data_path / "embeddings" / "vectors" / "keys.journal").read_bytes()
    return _mmap_tier._replay(data)[0]


# -- the replica ---------------------------------------------------------------------


def test_answers_what_the_leader_answers(leader: Leader, replica: EmbeddingReplica) -> None:
    leader.upsert(items(range(40)))
    replica.start()
    assert replica.store
    assert replica.generation == 1
    assert len(replica) == 40
    assert replica.offset == leader.service.job.offset  # type: ignore[union-attr]
    ids = [f"i{i}" for i in range(40)] + ["unknown"]
    assert_same_answers(replica, leader.service, ids)
    vector = leader.service.lookup(["i3"]).vectors[0]
    assert replica.nearest(vector, 3, exclude={"i3"}) == leader.service.nearest(
        vector, 3, exclude={"i3"}
    )


def test_follows_a_leader_that_holds_its_locks(
    config: Config, leader: Leader, replica: EmbeddingReplica
) -> None:
    leader.upsert(items(range(5)))
    with pytest.raises(ConflictError):
        lock_directory(config.data_path / "embeddings" / "vectors", "the embedding store")
    replica.start()
    assert replica.lookup(["i0", "i4"]).found.all()


def test_picks_up_the_leaders_changes(
    config: Config, leader: Leader, replica: EmbeddingReplica
) -> None:
    leader.upsert(items(range(20)))
    replica.start()
    before = replica.lookup(["i0"]).vectors[0].copy()
    rows_before = journal_rows(config)
    leader.upsert(items(range(10), title="Renamed"))  # new rows; their old rows are freed
    leader.delete(["i15", "i16"])
    leader.upsert(items(range(20, 30)))  # takes the freed rows
    rows_after = journal_rows(config)
    reused = {rows_after[f"i{i}"] for i in range(20, 30)} & {
        rows_before[f"i{i}"] for i in range(10)
    }
    assert reused, "the new items should have reused rows freed by the renames"
    wait_for(lambda: replica.offset == leader.service.job.offset)  # type: ignore[union-attr]
    assert replica.generation >= 2
    assert replica.failure is None
    ids = [f"i{i}" for i in range(30)]
    assert_same_answers(replica, leader.service, ids)
    assert not np.array_equal(replica.lookup(["i0"]).vectors[0], before)
    assert replica.lookup(["i15", "i16", "i17"]).found.tolist() == [False, False, True]
    assert len(replica) == 28


def test_starts_empty_and_picks_up_the_first_run(leader: Leader, replica: EmbeddingReplica) -> None:
    replica.start()
    assert replica.store is None
    assert (len(replica), replica.generation) == (0, 0)
    assert not replica.lookup(["i0"]).found.any()
    assert replica.nearest_many(np.zeros((2, DIM), np.float32), 3, excludes=[(), ()]) == [[], []]
    leader.upsert(items(range(3)))
    wait_for(lambda: replica.store is not None)
    assert replica.lookup(["i0", "i2"]).found.all()
    assert replica.generation == 1


def test_writes_nothing(config: Config, leader: Leader, replica: EmbeddingReplica) -> None:
    leader.upsert(items(range(10)))
    before = tree(config.data_path)
    replica.start()
    replica.lookup(["i1"])
    time.sleep(0.2)  # some polls of the manifest
    assert tree(config.data_path) == before
    leader.upsert(items(range(10, 15)))
    before = tree(config.data_path)
    wait_for(lambda: len(replica) == 15)  # a reload
    replica.close()
    assert tree(config.data_path) == before


def test_a_failed_load_keeps_serving_the_last_one(
    leader: Leader, replica: EmbeddingReplica, monkeypatch: pytest.MonkeyPatch
) -> None:
    leader.upsert(items(range(5)))
    replica.start()
    real = read_vectors

    def failing(directory: Path, keys: Sequence[str]) -> tuple[int, np.ndarray, np.ndarray]:
        raise UnavailableError("the disk is gone")

    monkeypatch.setattr("hotshelf.embeddings._replica.read_vectors", failing)
    leader.upsert(items(range(5, 8)))
    wait_for(lambda: replica.failure is not None)
    assert "the disk is gone" in (replica.failure or "")
    assert len(replica) == 5
    assert replica.lookup(["i4"]).found.all()
    monkeypatch.setattr("hotshelf.embeddings._replica.read_vectors", real)
    wait_for(lambda: len(replica) == 8)
    assert replica.failure is None


@pytest.mark.redis
def test_follows_a_leader_on_redis(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    embeddings = EmbeddingsConfig(index="exact", refresh_s=0.02, backend="redis",
                                  redis_url=redis_url, redis_prefix="replica-test")  # fmt: skip
    config = Config(data_dir=str(tmp_path / "data"), embeddings=embeddings)
    monkeypatch.setattr("hotshelf.models.load_text_encoder", lambda *_, **__: FakeEncoder())
    leader = Leader(config, tmp_path / "catalog")
    replica = EmbeddingReplica(config, dim=DIM)
    try:
        leader.upsert(items(range(2500)))  # more than one read of the store
        replica.start()
        assert len(replica) == 2500
        assert_same_answers(replica, leader.service, [f"i{i}" for i in range(0, 2500, 7)])
        leader.delete(["i1", "i2"])
        wait_for(lambda: len(replica) == 2498)
        assert replica.lookup(["i1", "i3"]).found.tolist() == [False, True]
    finally:
        replica.close()
        leader.close()


@pytest.mark.redis
def test_on_redis_the_dim_is_the_configured_encoders(tmp_path: Path, redis_url: str) -> None:
    embeddings = EmbeddingsConfig(backend="redis", redis_url=redis_url)
    replica = EmbeddingReplica(Config(data_dir=str(tmp_path), embeddings=embeddings))
    replica.start()
    replica.close()
    assert replica.dim == EMBEDDING_DIM
    assert list(tmp_path.iterdir()) == []


# -- read_vectors: the store read without its lock -----------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MmapTier]:
    with MmapTier(tmp_path / "store", DIM, fsync=False) as tier:
        tier.put_many(["item-1", "item-2"], keyed(["item-1", "item-2"]))
        yield tier


def test_reads_while_the_writer_holds_the_lock(store: MmapTier) -> None:
    dim, vectors, found = read_vectors(store.directory, ["item-2", "missing", "item-1"])
    assert dim == DIM
    assert found.tolist() == [True, False, True]
    assert np.array_equal(vectors[[0, 2]], keyed(["item-2", "item-1"]))
    assert not vectors[1].any()


def test_a_torn_journal_tail_is_read_past_and_left_alone(store: MmapTier) -> None:
    journal = store.directory / "keys.journal"
    with journal.open("ab") as f:
        f.write(b"\x01\x02\x03 half a record")
    size = journal.stat().st_size
    _, vectors, found = read_vectors(store.directory, ["item-1", "item-2"])
    assert found.all()
    assert np.array_equal(vectors, keyed(["item-1", "item-2"]))
    assert journal.stat().st_size == size  # not truncated: that is the writer's business


def _during_copy(monkeypatch: pytest.MonkeyPatch, write: Callable[[], None]) -> list[int]:
    """Run ``write`` each time ``read_vectors`` copies rows, just before it copies;
    answers the list the calls are counted in."""
    copy = _mmap_tier._copy_rows
    calls: list[int] = []

    def racing(path: Path, rows: np.ndarray, dim: int) -> np.ndarray | None:
        calls.append(1)
        write()
        return copy(path, rows, dim)

    monkeypatch.setattr(_mmap_tier, "_copy_rows", racing)
    return calls


def test_a_row_reused_during_the_copy_is_read_again(
    store: MmapTier, monkeypatch: pytest.MonkeyPatch
) -> None:
    def overwrite_and_reuse() -> None:
        if len(calls) == 1:
            store.put_many(["item-1"], keyed(["item-7"]))  # a new row; item-1's old one is freed
            store.put_many(["item-9"], keyed(["item-9"]))  # ... and rewritten for item-9

    calls = _during_copy(monkeypatch, overwrite_and_reuse)
    _, vectors, found = read_vectors(store.directory, ["item-1"])
    assert found.all()
    assert np.array_equal(vectors, keyed(["item-7"]))  # never item-9's vector
    assert len(calls) == 2


def test_writes_to_other_keys_need_no_second_read(
    store: MmapTier, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _during_copy(monkeypatch, lambda: store.put_many(["item-5"], keyed(["item-5"])))
    _, vectors, _ = read_vectors(store.directory, ["item-1", "item-2"])
    assert np.array_equal(vectors, keyed(["item-1", "item-2"]))
    assert len(calls) == 1


def test_a_compaction_during_the_copy_is_read_again(
    store: MmapTier, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = store.directory / "keys.journal"

    def compact() -> None:
        if len(calls) == 1:
            inode = journal.stat().st_ino
            while journal.stat().st_ino == inode:  # rewrites until the journal is replaced
                store.put_many(["item-5"], keyed(["item-5"]))

    calls = _during_copy(monkeypatch, compact)
    _, vectors, _ = read_vectors(store.directory, ["item-1", "item-2"])
    assert np.array_equal(vectors, keyed(["item-1", "item-2"]))
    assert len(calls) == 2


def test_endless_change_is_a_clear_error(store: MmapTier, monkeypatch: pytest.MonkeyPatch) -> None:
    _during_copy(monkeypatch, lambda: store.put_many(["item-1"], keyed(["item-1"])))
    with pytest.raises(UnavailableError, match="kept changing while it was read"):
        read_vectors(store.directory, ["item-1", "item-2"])


def test_a_directory_without_a_store_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(UnavailableError, match="no embedding store"):
        read_vectors(tmp_path, ["item-1"])
    assert list(tmp_path.iterdir()) == []
