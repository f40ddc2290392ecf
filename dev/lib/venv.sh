# Sourced by dev/ scripts: a project virtualenv in .venv with the locked dependencies.
# Reinstalls only when pyproject.toml or constraints.txt changed since the last install.
ensure_venv() {
  local extras="$1"
  local python="${PYTHON:-python3}"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "Python 3.11+ is required (found $("$python" --version))" >&2; return 1; }
  if [[ ! -x .venv/bin/python ]]; then
    echo "==> creating .venv" >&2
    "$python" -m venv .venv
  fi
  local stamp=".venv/.installed-$extras"
  local want
  want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "==> installing the project with extras [$extras] from constraints.txt" >&2
    .venv/bin/python -m pip install -q --upgrade pip >&2
    .venv/bin/python -m pip install -q -c constraints.txt -e ".[$extras]" >&2
    echo "$want" >"$stamp"
  fi
}
