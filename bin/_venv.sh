# Sourced by bin/* scripts: create .venv with zbroker (editable) and its test extras
# when missing or when pyproject.toml changed since the last install.
VENV="${ZBROKER_VENV:-$PWD/.venv}"
PYTHON="${PYTHON:-python3}"
stamp="$VENV/.zbroker-installed"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install --quiet -e ".[test]"
    touch "$stamp"
fi
