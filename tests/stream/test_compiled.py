"""The stream's hot path as mypyc compiles it (``setup.py``) against the same sources
interpreted: the compiled build must be in use, and it must compute the same state.

The replay runs in two fresh processes, one as installed (compiled, unless the build
was asked for pure Python with ``HOTSHELF_PURE_PYTHON=1``) and one that imports the
compiled modules from their ``.py`` files: simulated traffic with bots and a click-spam
burst goes through a file log into a ``StreamProcessor`` with the bot filter, which
stops half-way (snapshot), restarts from its snapshot and finishes. Both must end in
byte-identical snapshots.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
EVENTS = 12_000


def compiled_modules() -> list[str]:
    """The module names ``setup.py`` compiles (its ``COMPILED`` paths)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMPILED":
            paths = ast.literal_eval(node.value)
            return [p.removesuffix(".py").replace("/", ".") for p in paths]
    raise AssertionError("setup.py has no COMPILED")


class _Interpreted(importlib.abc.MetaPathFinder):
    """Finds the compiled modules' ``.py`` sources, so that they run interpreted."""

    def __init__(self, names: Sequence[str]) -> None:
        self._names = set(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._names:
            return None
        return importlib.util.spec_from_file_location(
            fullname, SRC / (fullname.replace(".", "/") + ".py")
        )


def replay(root_text: str, interpreted: bool) -> None:
    """The process under test: prints the digest of the final snapshot and where each
    compiled module was loaded from, as JSON."""
    root = Path(root_text)
    names = compiled_modules()
    if interpreted:
        sys.meta_path.insert(0, _Interpreted(names))
    from hotshelf.simulation import SimConfig, SpamBurst, StoreSimulator
    from hotshelf.stream._processor import StreamProcessor, default_bot_filter_factory
    from tests.stream.simulated import config, open_logs, stored, upserts

    sim = StoreSimulator(
        SimConfig(seed=11, n_items=300, spam_bursts=(SpamBurst(at_s=20.0, multiplier=100.0),))
    )
    cfg = config(root / "run")
    events_log, catalog_log = open_logs(root / "log", cfg)
    catalog_log.append(upserts(sim.catalog()))
    from hotshelf.events import encode_stored_event

    events = stored(sim.events(EVENTS))
    while batch := [encode_stored_event(e) for e in itertools.islice(events, 500)]:
        events_log.append(batch)
    factory = default_bot_filter_factory(cfg)
    first = StreamProcessor(cfg, events_log, catalog_log, factory)
    while first.offsets()["events"] < EVENTS // 2:
        first.run_once(700)
    first.close()  # snapshots; the next one starts from it
    second = StreamProcessor(cfg, events_log, catalog_log, factory)
    second.catch_up(timeout_s=60)
    digest = hashlib.sha256(second.snapshot_bytes()).hexdigest()
    with second.reading() as state:
        bots = sum(state.counts().bot_events.values())
    second.close()
    events_log.close()
    catalog_log.close()
    files = {name: sys.modules[name].__file__ for name in names}
    print(json.dumps({"digest": digest, "bot_events": bots, "files": files}))


def _run(root: Path, interpreted: bool) -> dict[str, object]:
    code = f"from tests.stream.test_compiled import replay; replay({str(root)!r}, {interpreted})"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    return result


def _extension(path: object) -> bool:
    return str(path).endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def test_the_compiled_hot_path_ends_in_the_same_state_as_the_interpreted_one(
    tmp_path: Path,
) -> None:
    compiled = _run(tmp_path / "compiled", interpreted=False)
    interpreted = _run(tmp_path / "interpreted", interpreted=True)
    files = interpreted["files"]
    assert isinstance(files, dict)
    assert not any(_extension(f) for f in files.values()), files
    assert compiled["bot_events"] == interpreted["bot_events"]
    assert isinstance(compiled["bot_events"], int)
    assert compiled["bot_events"] > 0  # the bot filter had work to do
    assert compiled["digest"] == interpreted["digest"]


@pytest.mark.skipif(
    os.environ.get("HOTSHELF_PURE_PYTHON", "0") not in ("", "0"),
    reason="built without the compiled modules (HOTSHELF_PURE_PYTHON)",
)
def test_every_module_setup_compiles_is_loaded_compiled() -> None:
    for name in compiled_modules():
        module = importlib.import_module(name)
        assert _extension(module.__file__), f"{name} runs interpreted: {module.__file__}"


def test_no_compiled_module_is_older_than_its_source() -> None:
    """An editable install keeps the extensions beside the sources, where a stale one
    would shadow an edit (``scripts/_setup.sh`` rebuilds them). The compiled code
    itself is in the group's library (``group_name`` in setup.py); each module's own
    extension only loads it."""
    libraries = [p for p in SRC.glob("hotshelf_native__mypyc.*") if _extension(p)]
    for name in compiled_modules():
        source = SRC / (name.replace(".", "/") + ".py")
        for built in [*libraries, *source.parent.glob(source.stem + ".*")]:
            if _extension(built):
                assert built.stat().st_mtime >= source.stat().st_mtime, f"{built} is stale"
