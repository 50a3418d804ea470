# Sourced by scripts/demo and scripts/test: an idempotent local virtualenv in .venv.
# Reinstalls only when pyproject.toml changed since the last successful install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $PY" >&2
    "$PY" -m venv .venv
fi
STAMP=".venv/.hotshelf-setup"
NATIVE_STAMP=".venv/.hotshelf-native"
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "setup: installing hotshelf and its dependencies into .venv" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    # The CPU build of torch first: left to the resolver, torch comes as a multi-GB CUDA build.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
    # Interpreted first: the compiled modules are built below, once the dependencies
    # (whose types mypyc uses) are installed.
    HOTSHELF_PURE_PYTHON=1 .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
    echo "$WANT" > "$STAMP"
    rm -f "$NATIVE_STAMP"
fi
# The stream hot path, compiled by mypyc (setup.py), sits beside its sources and would
# shadow an edited .py: rebuild it whenever those sources or what they import changed.
NATIVE_WANT="$(cat setup.py src/hotshelf/_files.py src/hotshelf/config.py src/hotshelf/errors.py \
    src/hotshelf/events/*.py src/hotshelf/log/*.py src/hotshelf/stream/*.py \
    | sha256sum | cut -d' ' -f1)-${HOTSHELF_PURE_PYTHON:-0}"
NATIVE_LIB=""
for built in src/hotshelf_native__mypyc.*.so; do
    [ -e "$built" ] && NATIVE_LIB="$built"
done
NEWER=""  # a source touched since the build (a checkout): tests/stream/test_compiled.py checks
if [ -n "$NATIVE_LIB" ]; then
    NEWER="$(find src/hotshelf/log src/hotshelf/stream -name '*.py' -newer "$NATIVE_LIB" | head -n 1)"
fi
MISSING=""  # a failed build deleted the modules and kept the last good stamp
if [ -z "$NATIVE_LIB" ] && [ "${HOTSHELF_PURE_PYTHON:-0}" = 0 ]; then
    MISSING=1
fi
if [ ! -f "$NATIVE_STAMP" ] || [ "$(cat "$NATIVE_STAMP")" != "$NATIVE_WANT" ] || [ -n "$NEWER" ] \
    || [ -n "$MISSING" ]; then
    echo "setup: compiling the stream hot path (mypyc)" >&2
    find src -name '*.so' -delete
    rm -rf build  # setuptools would copy unchanged shims from it with their old times
    .venv/bin/python setup.py --quiet build_ext --inplace >/dev/null 2>&1 \
        || { echo "setup: mypyc build failed; run: .venv/bin/python setup.py build_ext --inplace" >&2; exit 1; }
    echo "$NATIVE_WANT" > "$NATIVE_STAMP"
fi
export PATH="$ROOT/.venv/bin:$PATH"
