"""``MmapTier``: crash safety, the journal, growth and the directory lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hotshelf.embeddings import MmapTier
from hotshelf.errors import ConfigError, ConflictError, UnavailableError
from tests.embeddings.data import DIM, keyed

# Batch b puts item-(10b)..item-(10b+9) (each vector holds its key's number) and "hot"
# (holding b), then deletes item-(10(b-1)), and reports b once both calls returned.
_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from hotshelf.embeddings import MmapTier

    tier = MmapTier(sys.argv[1], int(sys.argv[2]), initial_rows=4)
    batch = 0
    while True:
        keys = [f"item-{batch * 10 + j}" for j in range(10)] + ["hot"]
        values = [float(batch * 10 + j) for j in range(10)] + [float(batch)]
        tier.put_many(keys, np.repeat(np.array(values, np.float32)[:, None], tier.dim, 1))
        if batch:
            tier.delete_many([f"item-{(batch - 1) * 10}"])
        print(batch, flush=True)
        batch += 1
    """
)


@pytest.mark.parametrize("acked_before_kill", [3, 40])
def test_every_write_that_returned_survives_a_sigkill(
    tmp_path: Path, acked_before_kill: int
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path), str(DIM)],
        stdout=subprocess.PIPE,
        text=True,
    ) as writer:
        assert writer.stdout is not None
        acked = -1
        try:
            while acked < acked_before_kill:
                line = writer.stdout.readline()
                assert line, "the writer died"
                acked = int(line)
        finally:
            writer.send_signal(signal.SIGKILL)  # mid-batch: it never stops writing
            writer.wait()
        acked = max([acked, *map(int, writer.stdout.read().split())])

    tier = MmapTier(tmp_path, DIM)
    keys = [f"item-{i}" for i in range((acked + 2) * 10)]
    got, found = tier.get_many(keys)
    for i, key in enumerate(keys):
        batch = i // 10
        if batch <= acked and not (i % 10 == 0 and batch < acked):
            assert found[i], f"{key} was acknowledged but is gone"
        if i % 10 == 0 and batch < acked:
            assert not found[i], f"{key} was deleted, and that was acknowledged"
    assert (got[found] == keyed([k for k, f in zip(keys, found, strict=True) if f])).all()
    hot, hot_found = tier.get_many(["hot"])
    assert hot_found.all()
    assert hot[0, 0] in (acked, acked + 1)
    assert (hot[0] == hot[0, 0]).all()  # never half of one write and half of another
    tier.put_many(["after"], keyed(["item-7"]))  # and it takes writes again
    tier.close()


def test_a_torn_journal_tail_is_cut_off(tmp_path: Path) -> None:
    with MmapTier(tmp_path, DIM) as tier:
        tier.put_many(["item-1", "item-2"], keyed(["item-1", "item-2"]))
    journal = tmp_path / "keys.journal"
    good_size = journal.stat().st_size
    with journal.open("ab") as f:
        f.write(b"\x01\x02\x03 half a record")
    with MmapTier(tmp_path, DIM) as tier:
        assert journal.stat().st_size == good_size
        got, found = tier.get_many(["item-1", "item-2"])
        assert found.all()
        assert (got == keyed(["item-1", "item-2"])).all()
        tier.put_many(["item-3"], keyed(["item-3"]))
    with MmapTier(tmp_path, DIM) as tier:
        assert len(tier) == 3


def test_a_damaged_record_ends_the_replay_there(tmp_path: Path) -> None:
    with MmapTier(tmp_path, DIM) as tier:
        tier.put_many(["item-1"], keyed(["item-1"]))
        tier.put_many(["item-2"], keyed(["item-2"]))
    journal = tmp_path / "keys.journal"
    data = bytearray(journal.read_bytes())
    data[-1] ^= 0xFF  # the last record's key no longer matches its checksum
    journal.write_bytes(bytes(data))
    with MmapTier(tmp_path, DIM) as tier:
        assert tier.get_many(["item-1", "item-2"])[1].tolist() == [True, False]


def test_grows_past_its_initial_rows(tmp_path: Path) -> None:
    keys = [f"item-{i}" for i in range(1000)]
    with MmapTier(tmp_path, DIM, initial_rows=2) as tier:
        for start in range(0, 1000, 100):
            tier.put_many(keys[start : start + 100], keyed(keys[start : start + 100]))
        assert (tier.get_many(keys)[0] == keyed(keys)).all()
    assert (tmp_path / "vectors.f32").stat().st_size >= 1000 * DIM * 4
    with MmapTier(tmp_path, DIM, initial_rows=2) as tier:
        got, found = tier.get_many(keys)
        assert found.all()
        assert (got == keyed(keys)).all()


def test_overwrites_reuse_rows_and_compact_the_journal(tmp_path: Path) -> None:
    keys = [f"item-{i}" for i in range(10)]
    # copy on write: 10 live rows plus 10 for the batch being written
    with MmapTier(tmp_path, DIM, fsync=False, initial_rows=20) as tier:
        for round_ in range(1000):
            tier.put_many(keys, keyed(keys) + round_)
        got, found = tier.get_many(keys)
        assert found.all()
        assert (got == keyed(keys) + 999).all()
    # 10,000 writes of 10 keys: rows and records stay proportional to the live keys
    assert (tmp_path / "vectors.f32").stat().st_size == 20 * DIM * 4
    assert (tmp_path / "keys.journal").stat().st_size < 3 * (4096 + 20) * 20
    with MmapTier(tmp_path, DIM) as tier:
        assert (tier.get_many(keys)[0] == keyed(keys) + 999).all()
        assert len(tier) == 10


def test_reopening_with_another_dim_is_refused(tmp_path: Path) -> None:
    MmapTier(tmp_path, DIM).close()
    with pytest.raises(ConfigError, match=f"dim {DIM}"):
        MmapTier(tmp_path, DIM * 2)


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    with MmapTier(tmp_path, DIM), pytest.raises(ConflictError, match="open elsewhere"):
        MmapTier(tmp_path, DIM)
    MmapTier(tmp_path, DIM).close()  # the lock goes with close()


def test_a_closed_tier_says_so(tmp_path: Path) -> None:
    tier = MmapTier(tmp_path, DIM)
    tier.close()
    tier.close()
    with pytest.raises(UnavailableError, match="closed"):
        tier.get_many(["item-1"])
    with pytest.raises(UnavailableError, match="closed"):
        tier.put_many(["item-1"], keyed(["item-1"]))


def test_files_are_what_the_docs_say(tmp_path: Path) -> None:
    with MmapTier(tmp_path, DIM) as tier:
        tier.put_many(["item-3"], keyed(["item-3"]))
    raw = np.fromfile(tmp_path / "vectors.f32", dtype="<f4").reshape(-1, DIM)
    assert (raw[0] == 3.0).all()
    assert sorted(os.listdir(tmp_path)) == [".lock", "keys.journal", "meta.json", "vectors.f32"]
