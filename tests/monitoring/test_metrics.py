"""Metrics: private registries, cached children, the log observer, scrape-time gauges."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from hotshelf.config import LogConfig
from hotshelf.log import FileLog
from hotshelf.monitoring import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_registries_are_private() -> None:
    a, b = Metrics(process=False), Metrics(process=False)
    a.events_accepted.inc(3)
    assert samples(a)[("hotshelf_events_accepted_total", ())] == 3
    assert samples(b)[("hotshelf_events_accepted_total", ())] == 0


def test_observe_request() -> None:
    m = Metrics(process=False)
    for _ in range(3):
        m.observe_request("/v1/events", "POST", 200, 0.002)
    m.observe_request("/v1/events", "POST", 422, 0.0001)
    got = samples(m)
    labels = (("method", "POST"), ("route", "/v1/events"), ("status", "200"))
    assert got[("hotshelf_http_requests_total", labels)] == 3
    assert got[("hotshelf_http_request_duration_seconds_count", labels)] == 3
    bucket = tuple(sorted((*labels, ("le", "0.0025"))))
    assert got[("hotshelf_http_request_duration_seconds_bucket", bucket)] == 3


def test_log_observer_from_a_real_log(tmp_path: Path) -> None:
    m = Metrics(process=False)
    with FileLog(tmp_path, LogConfig(fsync=True), observer=m.observer("events")) as log:
        m.watch_log("events", log.stats)

        def appender() -> None:
            for _ in range(20):
                log.append([b"x" * 10] * 5)

        threads = [threading.Thread(target=appender) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = samples(m)
        topic = (("topic", "events"),)
        assert got[("hotshelf_log_append_duration_seconds_count", topic)] == 80
        assert got[("hotshelf_log_sync_records_sum", topic)] == 400
        assert got[("hotshelf_log_sync_batches_sum", topic)] == 80  # appends across all syncs
        assert 1 <= got[("hotshelf_log_sync_batches_count", topic)] <= 80
        assert got[("hotshelf_log_end_offset", topic)] == 400
        assert got[("hotshelf_log_size_bytes", topic)] == log.stats().size_bytes
    # a closed log must not break the scrape
    assert "hotshelf_log_end_offset" in m.render().decode()


def test_unknown_methods_share_one_label() -> None:
    m = Metrics(process=False)
    m.observe_request("/v1/events", "BREW", 405, 0.001)
    m.observe_request("/v1/events", "SPAM", 405, 0.001)
    labels = (("method", "other"), ("route", "/v1/events"), ("status", "405"))
    assert samples(m)[("hotshelf_http_requests_total", labels)] == 2


def test_gc_pauses_are_timed_per_generation_by_one_hook() -> None:
    a, b = Metrics(), Metrics()  # two registries, one hook in the process
    assert sum(type(hook).__name__ == "_Pauses" for hook in gc.callbacks) == 1
    before = samples(a)
    count = ("hotshelf_gc_pause_seconds_count", (("generation", "2"),))
    seconds = ("hotshelf_gc_pause_seconds_sum", (("generation", "2"),))
    garbage = [[] for _ in range(1000)]
    for i, node in enumerate(garbage):  # cycles for the collection to find
        node.append(garbage[i - 1])
    del garbage, node
    gc.collect(2)
    gc.collect(2)
    after = samples(a)
    assert after[count] >= before[count] + 2
    assert after[seconds] > before[seconds]
    assert samples(b)[count] == after[count]
    # buckets are cumulative and end with every collection
    inf = ("hotshelf_gc_pause_seconds_bucket", (("generation", "2"), ("le", "+Inf")))
    low = ("hotshelf_gc_pause_seconds_bucket", (("generation", "2"), ("le", "0.0001")))
    assert after[low] <= after[inf] == after[count]
