"""Command-line pieces the benchmarks share."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

__all__ = ["add_only_option"]


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
