"""Build hook: the stream processor's per-event path compiled to C with mypyc.

Everything else is in ``pyproject.toml``. The modules below run once or more for every
event the stream processor applies (reading and decoding the log, the bot filter, the
state update); compiled, they apply ~1.5x the events per CPU second (median of runs
alternated with the interpreted sources, see docs/BENCHMARKS.md). They
are ordinary, fully typed Python (``mypy --strict``), and the package behaves the same
without the extensions: set ``HOTSHELF_PURE_PYTHON=1`` when installing (or on a machine
without a C compiler) to keep them interpreted.

An editable install puts the compiled modules next to their sources, where they take
precedence over the ``.py`` files: ``scripts/_setup.sh`` rebuilds them whenever a
source changed, so ``scripts/test`` and ``scripts/demo`` always run the code on disk.
"""

from __future__ import annotations

import os

from setuptools import setup

COMPILED = (
    "hotshelf/log/_file_consumer.py",
    "hotshelf/log/_frame.py",
    "hotshelf/log/_segment.py",
    "hotshelf/stream/_admission.py",
    "hotshelf/stream/_bot_behaviour.py",
    "hotshelf/stream/_bot_filter.py",
    "hotshelf/stream/_bounded.py",
    "hotshelf/stream/_coengagement.py",
    "hotshelf/stream/_history.py",
    "hotshelf/stream/_lane.py",
    "hotshelf/stream/_merge.py",
    "hotshelf/stream/_sketch.py",
    "hotshelf/stream/_state.py",
    "hotshelf/stream/_trending.py",
)


def _ext_modules() -> list[object]:
    if os.environ.get("HOTSHELF_PURE_PYTHON", "0") not in ("", "0"):
        return []
    from mypyc.build import mypycify

    paths = [f"src/{path}" for path in COMPILED]
    return list(mypycify(paths, group_name="hotshelf_native"))


setup(ext_modules=_ext_modules())
