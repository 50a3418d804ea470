"""``SnapshotStore``: a lane file each, only changed lanes rewritten, read back whole."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from hotshelf.stream._snapshot import (
    SnapshotDamagedError,
    SnapshotStore,
    encode_snapshot,
)

SETTINGS = "0123456789abcdef"


def lanes(rt: bytes, batch: bytes) -> dict[str, msgspec.Raw]:
    # any msgpack value stands for a lane's encoding here
    return {"rt": msgspec.Raw(msgspec.msgpack.encode(rt)),
            "batch": msgspec.Raw(msgspec.msgpack.encode(batch))}  # fmt: skip


def lane_files(directory: Path) -> dict[str, tuple[int, int]]:
    """Lane file name -> (inode, mtime in ns): what a rewrite would change."""
    return {
        path.name: (path.stat().st_ino, path.stat().st_mtime_ns)
        for path in directory.glob("snapshot-*.msgpack")
    }


def test_a_saved_snapshot_reads_back_as_the_bytes_of_one_file(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, fsync=False)
    assert store.read() is None
    saved = lanes(b"live", b"bulk" * 1000)
    size = store.save(SETTINGS, saved)
    whole = encode_snapshot(SETTINGS, saved)
    assert store.read() == whole
    assert size == sum(len(raw) for raw in saved.values())
    # a new store object (a restart) reads the same
    assert SnapshotStore(tmp_path).read() == whole


def test_only_the_lanes_that_changed_are_written_again(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, fsync=False)
    first = lanes(b"live-1", b"bulk" * 1000)
    store.save(SETTINGS, first)
    before = lane_files(tmp_path)
    second = {"rt": lanes(b"live-2", b"")["rt"], "batch": first["batch"]}
    store.save(SETTINGS, second)
    after = lane_files(tmp_path)
    batch_files = [name for name in after if name.endswith(".batch.msgpack")]
    assert len(batch_files) == 1
    assert after[batch_files[0]] == before[batch_files[0]]
    rt_files = [name for name in after if name.endswith(".rt.msgpack")]
    assert len(rt_files) == 1
    assert rt_files[0] not in before  # the old one is deleted
    assert store.read() == encode_snapshot(SETTINGS, second)


def test_after_a_restart_equal_lane_bytes_are_not_written_again(tmp_path: Path) -> None:
    SnapshotStore(tmp_path, fsync=False).save(SETTINGS, lanes(b"live", b"bulk" * 1000))
    before = lane_files(tmp_path)
    # a restored lane encodes to equal bytes in a new object: compared by digest
    restarted = SnapshotStore(tmp_path, fsync=False)
    restarted.save(SETTINGS, lanes(b"live, later", b"bulk" * 1000))
    after = lane_files(tmp_path)
    assert {n for n in after if ".batch." in n} == {n for n in before if ".batch." in n}
    assert all(after[n] == before[n] for n in after if ".batch." in n)


def test_a_lane_file_that_is_missing_or_altered_is_damage(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, fsync=False)
    store.save(SETTINGS, lanes(b"live", b"bulk" * 1000))
    (batch,) = tmp_path.glob("snapshot-*.batch.msgpack")
    data = bytearray(batch.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, one bit off
    batch.write_bytes(bytes(data))
    with pytest.raises(SnapshotDamagedError, match="does not match"):
        store.read()
    batch.unlink()
    with pytest.raises(SnapshotDamagedError, match="missing"):
        store.read()


def test_files_of_a_save_cut_short_are_ignored_then_deleted(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, fsync=False)
    saved = lanes(b"live", b"bulk")
    store.save(SETTINGS, saved)
    # a crash after a lane file was written but before the manifest named it
    orphan = tmp_path / "snapshot-2.rt.msgpack"
    orphan.write_bytes(b"half a lane")
    assert store.read() == encode_snapshot(SETTINGS, saved)
    store.save(SETTINGS, lanes(b"live, later", b"bulk"))
    assert orphan.read_bytes() != b"half a lane"  # written over by the next save, or gone
    assert len(lane_files(tmp_path)) == 2


def test_a_whole_snapshot_file_is_read_as_it_is_and_replaces_the_lane_files(
    tmp_path: Path,
) -> None:
    store = SnapshotStore(tmp_path, fsync=False)
    store.save(SETTINGS, lanes(b"live", b"bulk"))
    whole = encode_snapshot("fedcba9876543210", lanes(b"other", b"state"))
    store.write(whole)  # as an earlier release wrote every snapshot
    assert store.read() == whole
    assert lane_files(tmp_path) == {}
    store.write(b"garbage")  # not a manifest either: for the decoder to refuse
    assert store.read() == b"garbage"
    saved = lanes(b"live", b"bulk")
    store.save(SETTINGS, saved)
    assert store.read() == encode_snapshot(SETTINGS, saved)


def test_saving_with_fsync_leaves_every_file_durable_and_readable(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "new", fsync=True)  # the directory is made
    saved = lanes(b"live", b"bulk")
    store.save(SETTINGS, saved)
    assert SnapshotStore(tmp_path / "new").read() == encode_snapshot(SETTINGS, saved)
    assert sorted(os.listdir(tmp_path / "new")) == sorted(
        ["snapshot.msgpack", *lane_files(tmp_path / "new")]
    )
