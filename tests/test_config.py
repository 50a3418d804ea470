"""The typed configuration: sources, precedence, errors, and its documentation."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from hotshelf.config import Config, load_config
from hotshelf.errors import ConfigError

DOC = Path(__file__).resolve().parents[1] / "docs" / "CONFIGURATION.md"


def test_defaults_need_no_server() -> None:
    cfg = load_config(environ={})
    assert cfg.log.backend == "file"
    assert cfg.server.host == "127.0.0.1"


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    file = tmp_path / "h.toml"
    file.write_text('data_dir = "/from/file"\n[server]\nport = 1\n[log]\nfsync = false\n')
    env = {"HOTSHELF_SERVER__PORT": "2", "HOTSHELF_DATA_DIR": "/from/env"}
    cfg = load_config(file, overrides=["server.port=3"], environ=env)
    assert cfg.server.port == 3
    assert cfg.data_dir == "/from/env"
    assert cfg.log.fsync is False


def test_config_env_var_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "h.toml"
    file.write_text("[events]\ndedup_window_s = 9\n")
    assert load_config(environ={"HOTSHELF_CONFIG": str(file)}).events.dedup_window_s == 9


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["log.nope=1"], "nope"),
        (["server.port=notanumber"], "port"),
        (["log.backend=kafka"], "backend"),
        (["novalue"], "section.key=value"),
        (["server.blas_threads=0"], "blas_threads"),
        (["embeddings.image_weight=1.0", 'embeddings.image_root="/tmp"'], "image_weight"),
        (["embeddings.image_weight=-0.5"], "image_weight"),
        (["embeddings.image_weight=0.3"], "image_root"),
        (["embeddings.image_dim=1281"], "image_dim"),
        (["embeddings.image_dim=0"], "image_dim"),
    ],
)
def test_bad_settings_name_the_key(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(overrides=overrides, environ={})


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[log\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad, environ={})


def _fields(struct: type[msgspec.Struct], prefix: str = "") -> list[str]:
    out = []
    for f in msgspec.structs.fields(struct):
        if isinstance(f.type, type) and issubclass(f.type, msgspec.Struct):
            out += _fields(f.type, f"{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


def test_every_setting_is_documented() -> None:
    doc = DOC.read_text(encoding="utf-8")
    missing = [name for name in _fields(Config) if f"`{name.rsplit('.', 1)[-1]}`" not in doc]
    assert missing == []
