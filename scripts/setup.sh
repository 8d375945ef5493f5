#!/usr/bin/env sh
# Set up .venv with Python >= 3.12 and model-router installed from the pinned lock file.
# Idempotent: a second run only checks. Used by the README's commands, .ci/run and the Dockerfile.
set -eu
cd "$(dirname "$0")/.."

find_python() {
    want=$(cat .python-version 2>/dev/null || echo 3.12)
    for candidate in "python3.13" "python3.12" "python3"; do
        for env in "" "PYENV_VERSION=$want"; do
            if env $env "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
                echo "$env $candidate"
                return 0
            fi
        done
    done
    return 1
}

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
    python=$(find_python) || {
        echo "model-router needs Python >= 3.12 (mitmproxy 12 requires it); none found." >&2
        echo "Install it (e.g. 'pyenv install 3.12') and run this again." >&2
        exit 1
    }
    rm -rf .venv
    env $python -m venv .venv
fi

stamp=.venv/.model-router-installed
if [ ! -f "$stamp" ] || [ requirements.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
    touch "$stamp"
fi
