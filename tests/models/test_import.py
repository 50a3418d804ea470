"""The serving path stays light: importing hotshelf.models loads neither torch nor onnx."""

from __future__ import annotations

import subprocess
import sys


def test_importing_hotshelf_models_does_not_import_torch() -> None:
    code = (
        "import sys, hotshelf.models\n"
        "heavy = [m for m in ('torch', 'transformers', 'onnx', 'sentence_transformers')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""
