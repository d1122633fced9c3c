# Sourced by bin/* scripts: create .venv with zbroker (editable) and its test extras
# when missing or when pyproject.toml changed since the last install.
VENV="${ZBROKER_VENV:-$PWD/.venv}"
PYTHON="${PYTHON:-python3}"
stamp="$VENV/.zbroker-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setting up $VENV (first run only) ..." >&2
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    if ! "$VENV/bin/python" -m pip install --quiet -e ".[test]" > "$VENV/install.log" 2>&1; then
        cat "$VENV/install.log" >&2
        echo "setting up $VENV failed (log above)" >&2
        exit 1
    fi
    touch "$stamp"
fi
