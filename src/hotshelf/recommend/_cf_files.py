"""Saved collaborative models: one directory per version, and a ``current`` pointer.

    <data_dir>/models/cf/
        current                    the version to serve (one line)
        als-20250101T120000Z-1a2b3c4d/
            user_factors.npy       visitors x factors (float32)
            item_factors.npy       items x factors (float32; BPR: the last column is the bias)
            seen_indptr.npy        CSR of the items each visitor engaged with, for exclusion
            seen_indices.npy
            ids.msgpack            {"visitors": [...], "items": [...]}, in row order
            manifest.json          ModelManifest: settings, offsets, counts, file checksums

A version is written whole into a hidden temp directory, fsynced, renamed into place,
and only then named in ``current`` (``write_atomically``): a crash leaves the old
model serving, never half a new one. The manifest holds every file's SHA-256, so a
file damaged or swapped later is refused with a ``ConfigError`` on load, not served.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, NamedTuple

import msgspec
import numpy as np

from hotshelf._files import fsync_directory, lock_directory, write_atomically
from hotshelf.config import CollaborativeConfig
from hotshelf.errors import ConfigError

__all__ = ["ModelFiles", "ModelManifest", "cf_root", "current_dir", "read_model", "write_model"]

FORMAT = 1
CURRENT = "current"
MANIFEST = "manifest.json"
IDS = "ids.msgpack"
ARRAYS = ("user_factors", "item_factors", "seen_indptr", "seen_indices")


class ModelManifest(msgspec.Struct, kw_only=True, frozen=True):
    """What a saved model is: how it was trained, on what, and its files' checksums.

    ``offsets`` is the next offset of each events topic the model reflects;
    ``trained_at`` is UTC, ISO 8601.
    """

    version: str
    algorithm: Literal["als", "bpr"]
    trained_at: str
    train_seconds: float
    offsets: dict[str, int]
    visitors: int
    items: int
    interactions: int
    settings: CollaborativeConfig
    files: dict[str, str] = msgspec.field(default_factory=dict)
    format: int = FORMAT


class _Ids(msgspec.Struct):
    visitors: list[str]
    items: list[str]


class ModelFiles(NamedTuple):
    manifest: ModelManifest
    arrays: dict[str, np.ndarray]
    visitors: list[str]
    items: list[str]


def cf_root(data_dir: Path) -> Path:
    """Where collaborative models live under ``data_dir``."""
    return data_dir / "models" / "cf"


def current_dir(data_dir: Path) -> Path | None:
    """The directory ``current`` names, or None when no model was saved yet."""
    root = cf_root(data_dir)
    try:
        version = (root / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {root / CURRENT}: {exc}") from None
    if not version or "/" in version or version.startswith("."):
        raise ConfigError(f"{root / CURRENT} names no model version: {version[:80]!r}")
    return root / version


def write_model(
    root: Path,
    manifest: ModelManifest,
    arrays: Mapping[str, np.ndarray],
    ids: tuple[list[str], list[str]],
    *,
    keep: int,
) -> Path:
    """Save a version under ``root`` and make it current; keep ``keep`` versions in all."""
    root.mkdir(parents=True, exist_ok=True)
    lock = lock_directory(root, "the collaborative model store")
    try:
        _remove_temp_dirs(root)  # a crashed save's; the lock says no save is running
        final = root / manifest.version
        if not final.is_dir():
            tmp = root / f".{manifest.version}.tmp"
            try:
                _write_files(tmp, manifest, arrays, ids)
                tmp.rename(final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            fsync_directory(root)
        write_atomically(root / CURRENT, f"{manifest.version}\n".encode())
        _prune(root, manifest.version, keep)
    finally:
        os.close(lock)
    return final


def _write_files(
    directory: Path,
    manifest: ModelManifest,
    arrays: Mapping[str, np.ndarray],
    ids: tuple[list[str], list[str]],
) -> None:
    directory.mkdir()
    digests: dict[str, str] = {}
    for name in ARRAYS:
        with open(directory / f"{name}.npy", "wb") as f:
            np.save(f, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        digests[f"{name}.npy"] = _sha256(directory / f"{name}.npy")
    write_atomically(directory / IDS, msgspec.msgpack.encode(_Ids(*ids)))
    digests[IDS] = _sha256(directory / IDS)
    final = msgspec.structs.replace(manifest, files=digests)
    write_atomically(directory / MANIFEST, msgspec.json.format(msgspec.json.encode(final)))


def read_model(directory: Path) -> ModelFiles:
    """The checked contents of a saved version; ``ConfigError`` if missing or damaged."""
    try:
        manifest = msgspec.json.decode((directory / MANIFEST).read_bytes(), type=ModelManifest)
    except FileNotFoundError:
        raise ConfigError(f"no collaborative model in {directory} (no {MANIFEST})") from None
    except (OSError, msgspec.DecodeError) as exc:
        raise ConfigError(f"bad {MANIFEST} in {directory}: {exc}") from None
    if manifest.format != FORMAT:
        raise ConfigError(f"{directory}: model format {manifest.format}, hotshelf reads {FORMAT}")
    expected = {f"{name}.npy" for name in ARRAYS} | {IDS}
    if set(manifest.files) != expected:
        listed = sorted(manifest.files)
        raise ConfigError(f"{directory / MANIFEST} lists {listed}, not the model's files")
    for name, digest in manifest.files.items():
        try:
            actual = _sha256(directory / name)
        except OSError as exc:
            raise ConfigError(f"cannot read {directory / name}: {exc}") from None
        if actual != digest:
            raise ConfigError(f"{directory / name} is damaged: its checksum does not match")
    try:
        arrays = {name: np.load(directory / f"{name}.npy", allow_pickle=False) for name in ARRAYS}
        ids = msgspec.msgpack.decode((directory / IDS).read_bytes(), type=_Ids)
    except (OSError, ValueError, msgspec.DecodeError) as exc:  # DecodeError is a ValueError
        raise ConfigError(f"cannot load the model in {directory}: {exc}") from None
    return ModelFiles(manifest, arrays, ids.visitors, ids.items)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _remove_temp_dirs(root: Path) -> None:
    for path in root.glob(".*.tmp"):
        shutil.rmtree(path, ignore_errors=True)


def _prune(root: Path, current: str, keep: int) -> None:
    """Remove all but the ``keep`` newest versions (by their time stamp), never ``current``.

    Scheduled retraining would otherwise fill the disk one model at a time.
    """
    versions = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: (_stamp(p.name), p.name),
        reverse=True,
    )
    for path in versions[max(keep, 1) :]:
        if path.name != current:
            with contextlib.suppress(OSError):
                shutil.rmtree(path)


def _stamp(version: str) -> str:
    """The time part of ``<algorithm>-<UTC time>-<hash>``."""
    parts = version.split("-")
    return parts[1] if len(parts) == 3 else ""
