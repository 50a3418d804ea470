"""FileLog recovery: torn tails are cut, every other kind of damage is reported.

What the tests pin down:

* a log cut at any byte keeps every whole frame before the cut, and goes on
  appending at the right offset;
* a bit flipped in the *last* frame of the last segment is treated as a torn tail:
  the frame is dropped (a warning, ``recovery.truncated_tail_bytes``), since a crash
  mid-write looks exactly the same;
* a bit flipped anywhere else is damage: logged as an error on open, listed by
  ``recovery`` and ``verify()`` with the exact offsets lost, raised by reads of those
  offsets, while the records on either side stay readable.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import NamedTuple

import pytest
import structlog

from hotshelf.config import LogConfig
from hotshelf.errors import CorruptLogError
from hotshelf.log import Damage, FileLog, LogRecord

NOW_MS = 1_795_000_000_000


class Frame(NamedTuple):
    position: int
    end: int
    first: int
    last: int


class Built(NamedTuple):
    directory: Path
    segments: list[Path]
    frames: list[list[Frame]]  # per segment
    values: list[bytes]


def fixed_clock() -> int:
    return NOW_MS


def build(directory: Path, batches: list[list[bytes]], config: LogConfig) -> Built:
    """Write ``batches`` (one frame each) and work out where each frame lies."""
    with FileLog(directory, config, clock=fixed_clock) as log:
        results = [log.append(batch) for batch in batches]
    segments = sorted(directory.glob("*/*/*.log"))
    bases = [int(p.stem) for p in segments]
    frames: list[list[Frame]] = [[] for _ in segments]
    position = 0
    for batch, result in zip(batches, results, strict=True):
        k = max(i for i, base in enumerate(bases) if base <= result.first_offset)
        if result.first_offset == bases[k]:
            position = 0
        end = position + 29 + sum(4 + len(v) for v in batch)
        frames[k].append(Frame(position, end, result.first_offset, result.last_offset))
        position = end
    values = [v for batch in batches for v in batch]
    return Built(directory, segments, frames, values)


def restore(built: Built, work: Path) -> Path:
    """``work`` as a fresh copy of the built log (rewriting files: faster than copytree)."""
    if not work.exists():
        shutil.copytree(built.directory, work)
        return work
    pristine = {p.relative_to(built.directory) for p in built.directory.rglob("*") if p.is_file()}
    for path in work.rglob("*"):
        if path.is_file() and path.relative_to(work) not in pristine:
            path.unlink()
    for relative in pristine:
        (work / relative).parent.mkdir(parents=True, exist_ok=True)
        (work / relative).write_bytes((built.directory / relative).read_bytes())
    return work


def moved(built: Built, work: Path, segment: Path) -> Path:
    return work / segment.relative_to(built.directory)


def read_all(log: FileLog, offset: int = 0) -> list[LogRecord]:
    out: list[LogRecord] = []
    while offset < log.end_offset:
        records = log.read(offset)
        out += records
        offset = records[-1].offset + 1
    return out


def batches(n: int, size: int = 3, width: int = 9) -> list[list[bytes]]:
    return [[f"b{b:03d}r{r}".encode().ljust(width, b".") for r in range(size)] for b in range(n)]


def flip(path: Path, position: int, bit: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 1 << bit
    path.write_bytes(bytes(data))


# Checks run on reopen cycles; fsync off only to keep hundreds of cycles quick.
CONFIG = LogConfig(fsync=False, index_interval_bytes=100)


@pytest.fixture(scope="module")
def small_log(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """One segment, no index entries past the first frame: open walks all of it."""
    return build(tmp_path_factory.mktemp("small") / "log", batches(12), LogConfig(fsync=False))


@pytest.fixture(scope="module")
def indexed_log(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """One segment with an index entry every other frame."""
    return build(tmp_path_factory.mktemp("indexed") / "log", batches(12), CONFIG)


def test_cut_at_every_byte_of_the_last_frames(indexed_log: Built, tmp_path: Path) -> None:
    # The index on disk still points into the part cut off: it must not be trusted.
    small_log = indexed_log
    (segment,) = small_log.segments
    frames = small_log.frames[0]
    size = frames[-1].end
    for cut in range(frames[-3].position, size):
        work = restore(small_log, tmp_path / "work")
        with open(moved(small_log, work, segment), "r+b") as f:
            f.truncate(cut)
        whole = [fr for fr in frames if fr.end <= cut]
        end = whole[-1].last + 1
        with FileLog(work, CONFIG, clock=fixed_clock) as log:
            assert log.end_offset == end, cut
            assert log.recovery.truncated_tail_bytes == cut - whole[-1].end
            assert log.recovery.ok
            assert [r.value for r in read_all(log)] == small_log.values[:end]
            assert log.append([b"after"]).first_offset == end
            assert log.verify().ok
        with FileLog(work, CONFIG) as log:
            assert log.recovery.truncated_tail_bytes == 0
            assert log.read(end)[0].value == b"after"


def test_torn_tail_is_logged_as_a_warning(small_log: Built, tmp_path: Path) -> None:
    work = restore(small_log, tmp_path / "work")
    segment = moved(small_log, work, small_log.segments[0])
    last = small_log.frames[0][-1]
    with open(segment, "r+b") as f:
        f.truncate(last.end - 5)
    with structlog.testing.capture_logs() as logs, FileLog(work, CONFIG) as log:
        assert log.end_offset == last.first
    (entry,) = [e for e in logs if e["event"] == "log.torn_tail_truncated"]
    assert entry["log_level"] == "warning"
    assert (entry["offset"], entry["bytes"]) == (last.first, last.end - 5 - last.position)


def check_damaged(log: FileLog, built: Built, segment: Path, damaged: Frame) -> None:
    """The one damaged frame is reported and unreadable; everything else reads."""
    (damage,) = log.recovery.damage
    assert (damage.path, damage.position) == (str(segment), damaged.position)
    assert (damage.first_offset, damage.last_offset) == (damaged.first, damaged.last)
    assert log.recovery.truncated_tail_bytes == 0
    if damaged.first:
        assert [r.value for r in log.read(0)] == built.values[: damaged.first]
    for offset in (damaged.first, damaged.last):
        with pytest.raises(CorruptLogError) as info:
            log.read(offset)
        assert (info.value.first, info.value.last) == (damaged.first, damaged.last)
    after = read_all(log, damaged.last + 1)
    assert [r.value for r in after] == built.values[damaged.last + 1 :]
    report = log.verify()
    assert [(d.position, d.first_offset, d.last_offset) for d in report.damage] == [
        (damaged.position, damaged.first, damaged.last)
    ]
    assert report.records == len(built.values) - (damaged.last - damaged.first + 1)


def test_single_bit_flips_anywhere(small_log: Built, tmp_path: Path) -> None:
    (segment,) = small_log.segments
    frames = small_log.frames[0]
    config = LogConfig(fsync=False)
    for position in range(frames[-1].end):
        work = restore(small_log, tmp_path / "work")
        moved_segment = moved(small_log, work, segment)
        flip(moved_segment, position, position % 8)
        hit = next(fr for fr in frames if fr.position <= position < fr.end)
        with FileLog(work, config) as log:
            if hit is frames[-1]:
                # Indistinguishable from a torn write: dropped, with a warning.
                assert log.recovery.truncated_tail_bytes == hit.end - hit.position
                assert log.recovery.ok
                assert log.end_offset == hit.first
                assert [r.value for r in read_all(log)] == small_log.values[: hit.first]
                assert log.verify().ok
            else:
                check_damaged(log, small_log, moved_segment, hit)
                assert log.end_offset == frames[-1].last + 1
                assert log.append([b"more"]).first_offset == frames[-1].last + 1


def test_damage_is_logged_as_an_error_on_open(small_log: Built, tmp_path: Path) -> None:
    work = restore(small_log, tmp_path / "work")
    hit = small_log.frames[0][4]
    flip(moved(small_log, work, small_log.segments[0]), hit.position + 40, 3)
    with structlog.testing.capture_logs() as logs, FileLog(work, CONFIG) as log:
        assert not log.recovery.ok
    (entry,) = [e for e in logs if e["event"] == "log.damage_found_on_open"]
    assert entry["log_level"] == "error"
    assert (entry["first_offset"], entry["last_offset"]) == (hit.first, hit.last)


def test_consumer_stops_at_damage_and_can_skip_it(small_log: Built, tmp_path: Path) -> None:
    work = restore(small_log, tmp_path / "work")
    hit = small_log.frames[0][5]
    flip(moved(small_log, work, small_log.segments[0]), hit.position + 30, 0)
    with FileLog(work, CONFIG) as log:
        consumer = log.consumer("reader")
        assert [r.offset for r in consumer.poll()] == list(range(hit.first))
        with pytest.raises(CorruptLogError) as info:
            consumer.poll()
        assert info.value.last == hit.last
        consumer.seek(hit.last + 1)
        assert consumer.poll()[0].offset == hit.last + 1


def test_damage_before_the_last_index_entry_is_found_by_verify_and_reads(
    indexed_log: Built, tmp_path: Path
) -> None:
    small_log = indexed_log
    # Open only walks each segment from its last index entry; the rest is verify's job.
    work = restore(small_log, tmp_path / "work")
    segment = moved(small_log, work, small_log.segments[0])
    hit = small_log.frames[0][1]
    flip(segment, hit.position + 35, 6)
    with FileLog(work, CONFIG) as log:
        assert log.recovery.ok
        with pytest.raises(CorruptLogError):
            log.read(hit.first)
        assert [(d.first_offset, d.last_offset) for d in log.verify().damage] == [
            (hit.first, hit.last)
        ]
        assert [r.value for r in read_all(log, hit.last + 1)] == small_log.values[hit.last + 1 :]


def test_a_consumer_following_the_tail_starts_where_its_last_read_ended(
    tmp_path: Path,
) -> None:
    # One index entry for the whole segment: without the remembered frame start, every
    # read of the tail walks (and checks) each frame before it again.
    config = LogConfig(fsync=False, index_interval_bytes=1 << 20)
    built = build(tmp_path / "log", batches(8), config)
    frames = built.frames[0]
    with FileLog(built.directory, config) as log:
        consumer = log.consumer("tail")
        passed = consumer.poll(frames[5].last + 1)
        assert [r.offset for r in passed] == list(range(frames[5].last + 1))
        # a frame it passed goes bad: its next read must not walk over it again
        flip(built.segments[0], frames[2].position + 35, 6)
        with structlog.testing.capture_logs() as logs:
            rest = consumer.poll()
        assert [r.value for r in rest] == built.values[frames[6].first :]
        assert [e["event"] for e in logs if e["log_level"] == "error"] == []
        # a read from further back still walks from the index and finds the damage
        with pytest.raises(CorruptLogError):
            log.read(frames[2].first)


@pytest.fixture(scope="module")
def segmented_log(tmp_path_factory: pytest.TempPathFactory) -> Built:
    config = LogConfig(fsync=False, segment_max_bytes=400)
    built = build(tmp_path_factory.mktemp("segmented") / "log", batches(20), config)
    assert len(built.segments) >= 4
    return built


@pytest.mark.parametrize("which", ["first", "middle", "last"])
def test_flip_in_a_closed_segment_is_damage_not_a_torn_tail(
    segmented_log: Built, tmp_path: Path, which: str
) -> None:
    frames = segmented_log.frames[1]
    hit = {"first": frames[0], "middle": frames[1], "last": frames[-1]}[which]
    work = restore(segmented_log, tmp_path / "work")
    segment = moved(segmented_log, work, segmented_log.segments[1])
    flip(segment, hit.position + 31, 2)
    with FileLog(work, LogConfig(fsync=False)) as log:
        check_damaged(log, segmented_log, segment, hit)
        assert log.end_offset == len(segmented_log.values)


def test_cut_closed_segment_is_damage(segmented_log: Built, tmp_path: Path) -> None:
    frames = segmented_log.frames[1]
    work = restore(segmented_log, tmp_path / "work")
    segment = moved(segmented_log, work, segmented_log.segments[1])
    with open(segment, "r+b") as f:
        f.truncate(frames[-1].position + 10)
    with FileLog(work, LogConfig(fsync=False)) as log:
        assert log.recovery.truncated_tail_bytes == 0
        assert log.recovery.damage == [
            Damage(
                str(segment),
                frames[-1].position,
                frames[-1].first,
                frames[-1].last,
                log.recovery.damage[0].reason,
            )
        ]
        with pytest.raises(CorruptLogError):
            log.read(frames[-1].first)
        assert log.read(frames[-1].last + 1)[0].offset == frames[-1].last + 1


def test_missing_segment_is_a_gap(segmented_log: Built, tmp_path: Path) -> None:
    work = restore(segmented_log, tmp_path / "work")
    moved(segmented_log, work, segmented_log.segments[2]).unlink()
    lost = segmented_log.frames[2]
    with FileLog(work, LogConfig(fsync=False)) as log:
        (damage,) = log.recovery.damage
        assert (damage.first_offset, damage.last_offset) == (lost[0].first, lost[-1].last)
        assert "missing" in damage.reason
        with pytest.raises(CorruptLogError):
            log.read(lost[0].first)
        assert [r.value for r in log.read(0)] == segmented_log.values[: lost[0].first]
        assert log.read(lost[-1].last + 1)[0].offset == lost[-1].last + 1
        assert not log.verify().ok


def test_garbage_after_the_tail_of_the_last_segment_is_cut(
    small_log: Built, tmp_path: Path
) -> None:
    work = restore(small_log, tmp_path / "work")
    segment = moved(small_log, work, small_log.segments[0])
    with open(segment, "ab") as f:
        f.write(b"\0" * 4096)  # a crash after the size grew but before the data landed
    with FileLog(work, CONFIG) as log:
        assert log.recovery.truncated_tail_bytes == 4096
        assert log.recovery.ok
        assert log.end_offset == len(small_log.values)
