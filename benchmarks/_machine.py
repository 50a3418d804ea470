"""What the machine itself did during a measurement, to tell a slow run from slow code.

On a shared virtual machine the same code can take half as long again from one
minute to the next. Two readings go beside a benchmark's rows, and one wait before them:

* ``CpuWindow``: over a row, the share of all cores' time that the hypervisor gave
  to someone else (``steal_pct``, from ``/proc/stat``) and the share that was busy
  in this machine (``busy_pct``, every process: the benchmark's own load included).
  The kernel counts these in clock ticks: over a row of steady load they are fair,
  over a short phase that wakes every millisecond they can be far off (the wake-ups
  fall in or out of step with the ticks).
* ``wait_quiet``: before a phase, until the machine is idle, so one phase's leftovers
  (a stopped server's write-back) do not land in the next.
* ``speed_probe``: a fixed piece of pure-Python work (string keys into a dict,
  sorted, looked up) timed a few times on one core; its fastest run in ms goes up
  when the machine is slower per instruction, which steal does not show (a busy
  host's cache and memory bandwidth), and its median when it is interrupted.

None changes what a benchmark measures; the readings only explain it.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

__all__ = ["CpuWindow", "speed_probe", "wait_quiet"]

_STAT = Path("/proc/stat")
# /proc/stat's aggregate "cpu" line: user nice system idle iowait irq softirq steal ...
_IDLE, _IOWAIT, _STEAL = 3, 4, 7
_PROBE_KEYS = 20_000


def _cpu_line() -> list[int] | None:
    """The aggregate CPU times (in clock ticks), or None where there is no /proc/stat."""
    try:
        with _STAT.open() as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # guest time is counted in user time too: the first eight fields are the whole
    return [int(x) for x in fields[1:9]]


class CpuWindow:
    """CPU shares between construction and ``shares()``: ``steal_pct`` (taken by the
    hypervisor) and ``busy_pct`` (neither idle nor waiting for I/O), of all cores."""

    def __init__(self) -> None:
        self._start = _cpu_line()

    def shares(self) -> dict[str, float]:
        end = _cpu_line()
        if self._start is None or end is None:
            return {}
        delta = [b - a for a, b in zip(self._start, end, strict=True)]
        total = sum(delta)
        if total <= 0:
            return {}
        busy = total - delta[_IDLE] - delta[_IOWAIT] - delta[_STEAL]
        return {
            "steal_pct": round(100 * delta[_STEAL] / total, 2),
            "busy_pct": round(100 * busy / total, 1),
        }


def wait_quiet(busy_pct: float = 15.0, window_s: float = 0.5, max_wait_s: float = 30.0) -> float:
    """Wait until the whole machine is under ``busy_pct`` busy over ``window_s`` (at most
    ``max_wait_s``), so a phase does not start while the last one's leftovers (a
    server's shutdown, a deleted store's write-back) still run; returns the seconds
    waited. Without /proc/stat, returns at once."""
    started = time.monotonic()
    while time.monotonic() - started < max_wait_s:
        window = CpuWindow()
        time.sleep(window_s)
        shares = window.shares()
        if shares.get("busy_pct", 0.0) < busy_pct:
            break
    return round(time.monotonic() - started, 2)


def _probe_work(keys: list[str]) -> int:
    table = {key: n for n, key in enumerate(keys)}
    order = sorted(keys)
    return sum(table[key] for key in order[::7])


def speed_probe(repeat: int = 7) -> dict[str, float]:
    """The fixed workload's fastest and median time in ms over ``repeat`` runs."""
    keys = [f"probe-{(n * 7919) % _PROBE_KEYS:05d}-{n % 13}" for n in range(_PROBE_KEYS)]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        _probe_work(keys)
        times.append(1000 * (time.perf_counter() - started))
    return {
        "probe_ms_min": round(min(times), 2),
        "probe_ms_median": round(statistics.median(times), 2),
    }
