"""``hotshelf stream run``: one partition's stream processor as a process of its own.

Scale-out: N processes, each started with ``--partition I/N``, share the stream by
visitor key (``hotshelf.stream`` ``_partition``); each reads the whole configured log
and applies its own visitors' events. With the Redis log backend their snapshots go
to Redis by default, where ``hotshelf.stream.RemoteState`` merges them for the
service. SIGTERM or Ctrl-C stops the processor after its current batch and writes a
last snapshot; a SIGKILL loses nothing either: a restart resumes from the last
snapshot's offsets.
"""

from __future__ import annotations

import signal
import threading
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from hotshelf.cli._app import app
from hotshelf.cli._options import (
    ConfigOpt,
    DataDirOpt,
    SetOpt,
    cli_errors,
    config_from_options,
)
from hotshelf.config import Config
from hotshelf.errors import ConfigError

if TYPE_CHECKING:
    from hotshelf.stream import Partition, StreamProcessor
    from hotshelf.stream._snapshot import SnapshotStorage

stream_app = typer.Typer(
    name="stream", help="Run the stream processor (trends, bots) over the log.",
    no_args_is_help=True,
)  # fmt: skip
app.add_typer(stream_app)


class SnapshotTarget(StrEnum):
    FILE = "file"
    REDIS = "redis"


PartitionOpt = Annotated[
    str | None,
    typer.Option(
        "--partition",
        "-p",
        help="I/N: run partition I of N (N must equal stream.partitions); "
        "I alone takes N from stream.partitions. Default 0/stream.partitions.",
    ),
]
SnapshotToOpt = Annotated[
    SnapshotTarget | None,
    typer.Option(
        "--snapshot-to",
        help="Where snapshots go: redis (default with log.backend = redis, "
        "for RemoteState readers) or file (data_dir/stream/p<I>of<N>/).",
    ),
]


def _partition(cfg: Config, text: str | None) -> Partition:
    from hotshelf.stream._partition import parse_partition

    count = cfg.stream.partitions
    partition = parse_partition(text or "0", count)
    if partition.count != count:
        # Readers merge stream.partitions snapshots: a mismatch would serve part of
        # the stream as if it were all of it.
        raise ConfigError(
            f"--partition {text} names {partition.count} partitions but stream.partitions "
            f"is {count}: set stream.partitions = {partition.count} for processors and readers"
        )
    return partition


def _store(cfg: Config, partition: Partition, target: SnapshotTarget | None) -> SnapshotStorage:
    if target is None:
        target = SnapshotTarget.REDIS if cfg.log.backend == "redis" else SnapshotTarget.FILE
    if target is SnapshotTarget.REDIS:
        from hotshelf.stream import RedisSnapshotStore

        return RedisSnapshotStore(cfg.log, partition.pair)
    from hotshelf.stream._snapshot import SnapshotStore

    return SnapshotStore(cfg.data_path / "stream" / partition.name, fsync=cfg.log.fsync)


def _stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: the processor finishes its batch, then stops."""
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def _run(cfg: Config, partition: Partition, store: SnapshotStorage) -> None:
    from hotshelf.log import open_log
    from hotshelf.stream import StreamProcessor, default_bot_filter_factory

    factory = default_bot_filter_factory(cfg) if cfg.bots.enabled else None
    stop = _stop_on_signals()
    with (
        open_log(cfg, "events") as events,
        open_log(cfg, "events.batch") as batch,
        open_log(cfg, "catalog") as catalog,
    ):
        processor = StreamProcessor(
            cfg, events, catalog, factory,
            batch_log=batch, partition=partition.pair, snapshot_store=store,
        )  # fmt: skip
        _say(f"stream partition {partition}: resuming at {_offsets(processor)}")
        _say(f"stream partition {partition}: snapshots to {store.location}")
        try:
            applied = processor.catch_up_and_freeze(stop)  # its state out of the cyclic GC
            _say(f"stream partition {partition}: caught up ({applied} records)")
            processor.run(stop)  # its last act is a snapshot
        finally:
            processor.close(snapshot=False)
        _say(f"stream partition {partition}: stopped at {_offsets(processor)}")


def _offsets(processor: StreamProcessor) -> str:
    return " ".join(f"{topic}={n}" for topic, n in processor.offsets().items())


def _say(line: str) -> None:
    # One unwrapped line each: this runs under supervisors that collect stderr.
    typer.echo(line, err=True)


@stream_app.command("run")
def run_partition(
    partition: PartitionOpt = None,
    snapshot_to: SnapshotToOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Process the events log as one partition until SIGTERM or Ctrl-C."""
    with cli_errors():
        cfg = config_from_options(config, overrides, data_dir)
        chosen = _partition(cfg, partition)
        _run(cfg, chosen, _store(cfg, chosen, snapshot_to))
