"""``StreamRunner``: the stream processor in the server's background thread, and what its
catch-up leaves to the cyclic GC."""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

from hotshelf.events import encode_stored_event
from hotshelf.log import FileLog
from hotshelf.serving._stream import StreamRunner
from hotshelf.simulation import SimConfig, StoreSimulator
from hotshelf.stream._bot_filter import BotFilter
from hotshelf.stream._processor import StreamProcessor, default_bot_filter_factory
from tests.stream.simulated import config, open_logs, stored, upserts


def _logs(tmp_path: Path, n: int) -> tuple[FileLog, FileLog]:
    """Both topics of a simulated store: its catalog and ``n`` events."""
    sim = StoreSimulator(SimConfig(seed=3, n_items=200))
    events, catalog = open_logs(tmp_path, config(tmp_path))
    catalog.append(upserts(sim.catalog()))
    events.append([encode_stored_event(e) for e in stored(sim.events(n))])
    return events, catalog


def test_the_state_a_catch_up_builds_is_frozen_out_of_the_cyclic_gc(tmp_path: Path) -> None:
    # built after the server's start-up freeze, it would sit in the oldest generation,
    # and every full collection would walk all of it
    events, catalog = _logs(tmp_path, 3000)
    runner = StreamRunner(config(tmp_path), events, catalog)
    frozen = gc.get_freeze_count()
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while gc.get_freeze_count() == frozen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runner.running
        assert runner.processor.caught_up()
        with runner.processor.reading() as state:
            assert state.counts().events  # the catch-up built a state ...
        assert runner.processor.bot_stats()["checked"]  # ... and judged its visitors
        bots = runner.processor.lanes[0].bots
        assert isinstance(bots, BotFilter)
        built = {id(v) for v in bots._cookies.visitors.values()}
        assert built
        # gc.get_objects() leaves frozen objects out
        assert not built.intersection(id(o) for o in gc.get_objects())
    finally:
        runner.close()
        events.close()
        catalog.close()


def _of_stream(o: object) -> bool:
    module = type(o).__module__  # a descriptor, for some C types
    return isinstance(module, str) and module.startswith("hotshelf.stream")


def _stream_objects(*roots: object) -> set[int]:
    """The ids of the objects of ``hotshelf.stream`` types reachable from ``roots``."""
    seen: set[int] = set()
    found: set[int] = set()
    todo = list(roots)
    while todo:
        o = todo.pop()
        if id(o) in seen or not gc.is_tracked(o):
            continue
        seen.add(id(o))
        if _of_stream(o):
            found.add(id(o))
        todo.extend(gc.get_referents(o))
    return found


def test_a_caught_up_state_holds_no_reference_cycles(tmp_path: Path) -> None:
    # what makes freezing it safe: what the state drops later, reference counting frees
    # (the cyclic GC never looks at a frozen object again)
    events, catalog = _logs(tmp_path, 3000)
    cfg = config(tmp_path)
    processor = StreamProcessor(cfg, events, catalog, default_bot_filter_factory(cfg))
    processor.catch_up()
    lane = processor.lanes[0]
    state, bots = lane.state, lane.bots
    processor.close(snapshot=False)
    events.close()
    catalog.close()
    del processor, lane
    gc.collect()  # the processor itself (threads, consumers) may hold cycles
    ours = _stream_objects(state, bots)
    assert len(ours) > 1000  # trend leaves, sketches, visitors ...
    was = gc.isenabled()
    gc.disable()  # only reference counting frees anything from here
    try:
        del state, bots
        # other tests' servers may still hold states of their own: only ours must be gone
        left = [o for o in gc.get_objects() if id(o) in ours and _of_stream(o)]
        assert not left
    finally:
        if was:
            gc.enable()


def test_a_catch_up_takes_what_the_logs_held_not_what_keeps_arriving(tmp_path: Path) -> None:
    # under live traffic the logs may never be caught up: the freeze must still come
    events, catalog = _logs(tmp_path, 500)
    cfg = config(tmp_path)
    processor = StreamProcessor(cfg, events, catalog, None)
    owed = sum(processor.lag().values())
    sim = StoreSimulator(SimConfig(seed=4, n_items=200))
    burst = [encode_stored_event(e) for e in stored(sim.events(2000))]
    one_round = processor.run_once

    def live_round(max_records: int = 1000, timeout_s: float = 0.0) -> int:
        events.append(burst)  # more arrives during every round than a round applies
        return one_round(max_records, timeout_s)

    processor.run_once = live_round  # type: ignore[method-assign]
    stop = threading.Event()
    frozen = gc.get_freeze_count()
    done: list[int] = []
    catching = threading.Thread(target=lambda: done.append(processor.catch_up_and_freeze(stop)))
    catching.start()
    catching.join(20)
    ended_by_itself = not catching.is_alive()
    stop.set()  # without the bound it would still be going: end it
    catching.join()
    try:
        assert ended_by_itself
        assert done
        assert done[0] >= owed
        assert sum(processor.lag().values()) > 0  # not caught up, and yet ...
        assert gc.get_freeze_count() > frozen  # ... frozen
    finally:
        processor.close(snapshot=False)
        events.close()
        catalog.close()
