"""Command-line pieces the benchmarks share."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_only_option", "run_and_report", "run_header"]


def add_only_option(parser: argparse.ArgumentParser, sections: Sequence[str]) -> None:
    """``--only a,b``: run just those sections (default: all), in ``sections``' order."""
    parser.add_argument(
        "--only", type=_sections_type(sections), default=list(sections), help=",".join(sections)
    )


def _sections_type(known: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse ``type`` for ``--only a,b``: the chosen sections of ``known``, in its order."""

    def parse(text: str) -> list[str]:
        chosen = [s.strip() for s in text.split(",") if s.strip()]
        if not chosen or set(chosen) - set(known):
            raise argparse.ArgumentTypeError(f"choose from {', '.join(known)}")
        return [s for s in known if s in chosen]

    return parse


def run_header(args: argparse.Namespace) -> dict[str, Any]:
    """What every result starts with: the machine (load included) and the arguments."""
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(),
               "loadavg_before": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    return {"machine": machine, "args": {k: v for k, v in vars(args).items() if k != "out"}}


def run_and_report(
    run: Callable[[argparse.Namespace], dict[str, Any]], args: argparse.Namespace
) -> None:
    """``run(args)``, timed, with the load after; JSON on stdout and in ``args.out``."""
    started = time.perf_counter()
    result = run(args)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=2)
    print(text)
    out: Path | None = args.out
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
