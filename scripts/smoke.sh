#!/usr/bin/env bash
# Smoke-test hivemem on every CPython >= 3.10 present besides the default python3:
# a private venv per version, then the fast tests (-m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
default=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
found=0
for exe in $( (ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.*/bin/python3 2>/dev/null; \
               command -v python3.10 python3.11 python3.12 python3.13 python3.14 2>/dev/null) | sort -u); do
    ver=$("$exe" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue
    case "$ver" in 3.[0-9]) continue ;; esac          # 3.0-3.9: unsupported
    [ "$ver" = "$default" ] && continue                # covered by `make test`
    case " ${seen:-} " in *" $ver "*) continue ;; esac
    seen="${seen:-} $ver"
    venv=".venv-$ver"
    echo "== smoke: Python $ver ($exe)"
    if [ ! -f "$venv/.installed" ] || [ pyproject.toml -nt "$venv/.installed" ]; then
        "$exe" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
        touch "$venv/.installed"
    fi
    "$venv/bin/python" -m pytest -q -m "not slow" -p no:cacheprovider
    found=$((found + 1))
done
echo "smoke: $found other Python version(s) passed"
