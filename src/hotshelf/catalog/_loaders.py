"""Reading catalog files: CSV, JSON lines, a JSON array, or Parquet.

Columns: ``item_id``, ``title`` (required), ``description``, ``category``, ``price``,
``availability``, ``image``, ``attributes``. Any other column goes into
``attributes``. ``category`` is a list, or a path string ("A > B > C", or "A/B/C"
when there is no ">"). In CSV, ``attributes`` is a JSON object and empty cells are
unset. Numeric ids are taken as strings; NaN prices as unset.

A file is all or nothing: every row is checked, and if any is bad the load raises
one ``ValidationError`` listing the problems (the first ``max_problems``) as
``FieldProblem("row 17: price", ...)``, where row N is the N-th record (header not
counted; text formats add the line number). Duplicate ``item_id``s are errors.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import typing
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal

import msgspec

from hotshelf.catalog._problems import split_error
from hotshelf.errors import ConfigError, FieldProblem, ValidationError
from hotshelf.events import Availability, Item

__all__ = ["ItemsFormat", "detect_format", "load_items_file"]

ItemsFormat = Literal["csv", "jsonl", "json", "parquet"]
_SUFFIXES: dict[str, ItemsFormat] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_FIELD_TYPES: dict[str, Any] = typing.get_type_hints(Item, include_extras=True)
_REQUIRED = ("item_id", "title")
# A record: its row number, its line (text formats), and its fields or why it is unreadable.
Row = tuple[int, int | None, dict[str, Any] | str]


def detect_format(path: Path) -> ItemsFormat:
    """The format named by the file's extension (a trailing ``.gz`` is looked through)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    known = ", ".join(_SUFFIXES)
    raise ValidationError(f"cannot tell the format of {path.name} (known extensions: {known})")


def _open_text(path: Path) -> IO[str]:
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


def _csv_rows(path: Path) -> Iterator[Row]:
    with _open_text(path) as text:
        reader = csv.DictReader(text)
        header = reader.fieldnames
        if not header:
            raise ValidationError(f"{path.name}: empty file, no header row")
        missing = [c for c in _REQUIRED if c not in header]
        if missing:
            problems = [FieldProblem("header", f"missing column {c!r}") for c in missing]
            raise ValidationError(f"{path.name}: the header lacks required columns", problems)
        line = reader.line_num
        for row, record in enumerate(reader, 1):
            yield row, line + 1, {k: v for k, v in record.items() if k is not None and v != ""}
            line = reader.line_num


def _jsonl_rows(path: Path) -> Iterator[Row]:
    with _open_text(path) as text:
        row = 0
        for line, raw in enumerate(text, 1):
            if not raw.strip():
                continue
            row += 1
            try:
                yield row, line, _as_object(msgspec.json.decode(raw))
            except msgspec.DecodeError as exc:
                yield row, line, f"invalid JSON: {exc}"


def _json_rows(path: Path) -> Iterator[Row]:
    with _open_text(path) as text:
        try:
            records = msgspec.json.decode(text.read())
        except msgspec.DecodeError as exc:
            raise ValidationError(f"{path.name}: invalid JSON: {exc}") from None
    if not isinstance(records, list):
        raise ValidationError(f"{path.name}: a .json catalog must be an array of objects")
    for row, record in enumerate(records, 1):
        yield row, None, _as_object(record)


def _parquet_rows(path: Path) -> Iterator[Row]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            "reading Parquet needs pyarrow: pip install 'hotshelf[parquet]'"
        ) from None
    try:
        source = pq.ParquetFile(path)
        row = 0
        for batch in source.iter_batches(batch_size=10_000):
            for record in batch.to_pylist():
                row += 1
                yield row, None, {k: v for k, v in record.items() if v is not None}
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise ValidationError(f"{path.name}: not a readable Parquet file: {exc}") from None


def _as_object(value: Any) -> dict[str, Any] | str:
    if not isinstance(value, dict):
        return f"expected a JSON object, got {type(value).__name__}"
    return {k: v for k, v in value.items() if v is not None}


_READERS = {"csv": _csv_rows, "jsonl": _jsonl_rows, "json": _json_rows, "parquet": _parquet_rows}


def _path_list(value: str) -> list[str]:
    separator = ">" if ">" in value else "/"
    return [part.strip() for part in value.split(separator) if part.strip()]


def _attributes(value: Any) -> dict[str, Any] | str:
    if isinstance(value, str):
        try:
            value = msgspec.json.decode(value)
        except msgspec.DecodeError as exc:
            return f"not valid JSON: {exc}"
    if isinstance(value, list) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        value = dict(value)  # a Parquet map column reads as (key, value) pairs
    if not isinstance(value, dict):
        return f"expected a JSON object, got {type(value).__name__}"
    return value


def _field(key: str, value: Any) -> Any:
    """One known column's value in the shape ``Item`` wants, where the shape is obvious."""
    if key == "category" and isinstance(value, str):
        return _path_list(value)
    if key == "item_id" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if key == "price" and isinstance(value, Decimal):
        return float(value)
    if key == "price" and isinstance(value, float) and math.isnan(value):
        return None
    if key == "availability" and isinstance(value, str):
        return value.strip().lower().replace(" ", "_").replace("-", "_")
    return value


def _normalize(fields: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    out: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for key, raw in fields.items():
        if key not in _FIELD_TYPES:
            extra[key] = raw
        elif key == "attributes":
            attributes = _attributes(raw)
            if isinstance(attributes, str):
                problems.append((key, attributes))
            else:
                out[key] = attributes
        elif (value := _field(key, raw)) is not None:
            out[key] = value
    if extra:
        out["attributes"] = {**extra, **out.get("attributes", {})}
    return out, problems


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _field_problems(out: dict[str, Any]) -> list[tuple[str, str]]:
    """Every bad field of a row (msgspec stops at the first), checked one by one."""
    problems = [(f, "required field missing") for f in _REQUIRED if f not in out]
    for key, value in out.items():
        try:
            msgspec.convert(value, _FIELD_TYPES[key], strict=False)
        except msgspec.ValidationError as exc:
            path, problem = split_error(exc)
            if key == "availability":
                problem = f"must be one of {', '.join(Availability)}"
            problems.append((key + path, f"{problem} (value: {_short(value)})"))
    return problems


def _to_item(fields: dict[str, Any]) -> Item | list[tuple[str, str]]:
    out, problems = _normalize(fields)
    if problems:
        return problems + _field_problems(out)
    try:
        return msgspec.convert(out, Item, strict=False)
    except msgspec.ValidationError as exc:
        path, problem = split_error(exc)
        return _field_problems(out) or [(path.lstrip("."), problem)]


def _row_problems(row: int, line: int | None, found: list[tuple[str, str]]) -> list[FieldProblem]:
    where = f" (line {line})" if line is not None else ""
    return [
        FieldProblem(f"row {row}: {field}" if field else f"row {row}", problem + where)
        for field, problem in found
    ]


def _read(path: Path, fmt: ItemsFormat, max_problems: int) -> list[Item]:
    items: list[Item] = []
    problems: list[FieldProblem] = []
    first_seen: dict[str, int] = {}
    bad = row = total = 0
    for row, line, fields in _READERS[fmt](path):
        found = _to_item(fields) if isinstance(fields, dict) else [("", fields)]
        if isinstance(found, Item):
            if (first := first_seen.setdefault(found.item_id, row)) == row:
                items.append(found)
                continue
            found = [("item_id", f"duplicate of row {first} ({found.item_id!r})")]
        bad += 1
        total += len(found)
        problems += _row_problems(row, line, found)[: max(0, max_problems - len(problems))]
    if bad:
        shown = (
            f"; the first {len(problems)} of {total} problems listed"
            if total > len(problems)
            else ""
        )
        message = f"{path.name}: {bad} bad row(s) of {row}, nothing loaded{shown}"
        raise ValidationError(message, problems)
    return items


def load_items_file(
    path: Path, format: ItemsFormat | None = None, *, max_problems: int = 100
) -> list[Item]:
    """Every item in the file, or ``ValidationError`` listing the bad rows (all or nothing)."""
    fmt = format or detect_format(path)
    try:
        return _read(path, fmt, max_problems)
    except UnicodeDecodeError as exc:
        raise ValidationError(
            f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except csv.Error as exc:
        raise ValidationError(f"{path.name}: malformed CSV: {exc}") from None
    except (OSError, EOFError) as exc:  # includes gzip.BadGzipFile
        raise ValidationError(f"cannot read {path}: {exc}") from None
