"""``hotshelf ingest FILE``: a bulk import of events into the batch lane's topic, events.batch.

The whole file is validated first and nothing is appended if any line is bad (every
problem is listed with its line number, up to 100). Then events go to the log in
batches; ids already in the log's de-duplication window are skipped, so re-running
an import after a crash appends each event once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import msgspec
import typer

from hotshelf.cli._app import app
from hotshelf.cli._options import (
    ConfigOpt,
    DataDirOpt,
    SetOpt,
    cli_errors,
    config_from_options,
    err_console,
    progress_bar,
)
from hotshelf.config import Config, ServerConfig
from hotshelf.errors import FieldProblem, ValidationError
from hotshelf.events import DedupWindow, Event, decode_events, encode_stored_event, normalize
from hotshelf.log import open_log

_MAX_PROBLEMS = 100


class _Chunk:
    """Non-blank NDJSON lines and the file line number of each."""

    __slots__ = ("lines", "numbers")

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.numbers: list[int] = []


def _chunks(path: Path, size: int) -> Iterator[_Chunk]:
    chunk = _Chunk()
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            chunk.lines.append(line if line.endswith(b"\n") else line + b"\n")
            chunk.numbers.append(number)
            if len(chunk.lines) == size:
                yield chunk
                chunk = _Chunk()
    if chunk.lines:
        yield chunk


def _decode_chunk(chunk: _Chunk, cfg: Config) -> list[Event]:
    limits = ServerConfig(max_body_bytes=1 << 40, max_events_per_request=len(chunk.lines))
    try:
        return decode_events(b"".join(chunk.lines), "application/x-ndjson", cfg.events, limits)
    except ValidationError as exc:
        problems = [_renumber(p, chunk.numbers) for p in exc.problems]
        raise ValidationError(exc.message, problems) from None


def _renumber(problem: FieldProblem, numbers: list[int]) -> FieldProblem:
    """``$[i].field`` inside a chunk -> ``line N: field`` in the file."""
    path = problem.path
    if path.startswith("$[") and "]" in path:
        index, _, rest = path[2:].partition("]")
        if index.isdigit() and int(index) < len(numbers):
            where = f"line {numbers[int(index)]}"
            return FieldProblem(f"{where}: {rest.lstrip('.')}" if rest else where, problem.problem)
    return FieldProblem(f"lines {numbers[0]}-{numbers[-1]}: {path}", problem.problem)


def _validate(path: Path, cfg: Config, batch: int) -> int:
    problems: list[FieldProblem] = []
    total = 0
    for chunk in _chunks(path, batch):
        try:
            total += len(_decode_chunk(chunk, cfg))
        except ValidationError as exc:
            where = f"lines {chunk.numbers[0]}-{chunk.numbers[-1]}"
            problems.extend(exc.problems or [FieldProblem(where, exc.message)])
            if len(problems) >= _MAX_PROBLEMS:
                break
    if problems:
        raise ValidationError(f"{path}: invalid events; nothing was ingested", problems)
    return total


@app.command()
def ingest(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="NDJSON events file.")],
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Events per log append.")] = 1000,
    max_past_days: Annotated[
        float | None, typer.Option(help="Accept events this old (historical imports).")
    ] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Import an NDJSON events file into the batch lane's log (events.batch), all or nothing."""
    with cli_errors():
        cfg = config_from_options(config, overrides, data_dir)
        if max_past_days is not None:
            events_cfg = msgspec.structs.replace(cfg.events, max_past_skew_s=max_past_days * 86400)
            cfg = msgspec.structs.replace(cfg, events=events_cfg)
        total = _validate(file, cfg, batch)
        appended = duplicates = 0
        with (
            open_log(cfg, "events") as live,
            open_log(cfg, "events.batch") as log,
            progress_bar() as progress,
        ):
            dedup = DedupWindow(cfg.events.dedup_window_s, cfg.events.dedup_max_ids)
            dedup.rebuild(live)  # an event already sent live is not imported again
            dedup.rebuild(log)
            task = progress.add_task(f"ingest {file.name}", total=total)
            for chunk in _chunks(file, batch):
                now_ms = int(time.time() * 1000)
                stored = normalize(_decode_chunk(chunk, cfg), now_ms, cfg.events, lane="batch")
                fresh, dup = dedup.filter(stored, now_ms=now_ms)
                if fresh:
                    try:
                        log.append([encode_stored_event(e) for e in fresh])
                    except BaseException:
                        dedup.release(fresh)
                        raise
                    dedup.confirm(fresh, now_ms=now_ms)
                appended += len(fresh)
                duplicates += dup
                progress.advance(task, len(chunk.lines))
        err_console.print(
            f"ingested {appended} event(s) into the log; {duplicates} duplicate(s) skipped"
        )
