# Sourced by bin/* scripts: create .venv with zbroker (editable) and its test extras
# when missing or when pyproject.toml changed since the last install; rebuild zbroker's
# compiled hot path (setup.py) when a compiled module's source changed since it was built.
VENV="${ZBROKER_VENV:-$PWD/.venv}"
PYTHON="${PYTHON:-python3}"
stamp="$VENV/.zbroker-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ]; then
    echo "setting up $VENV (first run only; compiling the hot path takes a minute or two) ..." >&2
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    if ! "$VENV/bin/python" -m pip install --quiet -e ".[test]" > "$VENV/install.log" 2>&1; then
        cat "$VENV/install.log" >&2
        echo "setting up $VENV failed (log above)" >&2
        exit 1
    fi
    touch "$stamp"
elif ! ZBROKER_PURE_PYTHON=1 "$VENV/bin/python" -c 'import sys, zbroker.build as b; sys.exit(1 if b.stale() else 0)'; then
    echo "rebuilding zbroker's compiled hot path (sources changed) ..." >&2
    if ! "$VENV/bin/python" -m pip install --quiet --no-deps -e . > "$VENV/install.log" 2>&1; then
        cat "$VENV/install.log" >&2
        echo "rebuilding failed (log above)" >&2
        exit 1
    fi
fi
