#!/usr/bin/env sh
# Set up .venv (Python >= 3.12) with model-router from the pinned lock file.
#   ./scripts/setup.sh          the sidecar (requirements.lock) — the README's start command
#   ./scripts/setup.sh --test   plus everything the test suite uses (requirements-test.lock, the
#                               Node client's packages, and as root the ip/iptables tools the
#                               transparent-mode test needs and redis-server for tests/state)
# Idempotent: a second run only checks. Used by the README, .ci/run and the Dockerfile.
set -eu
cd "$(dirname "$0")/.."
lock=requirements.lock
[ "${1:-}" = "--test" ] && lock=requirements-test.lock

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

stamp=".venv/.installed-$lock"
if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$lock"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
    touch "$stamp"
fi

[ "$lock" = requirements-test.lock ] || exit 0

# The openai Node SDK for the client-matrix test (tests/e2e/test_clients.py).
node=tests/clients/node
if command -v npm >/dev/null 2>&1 && ! [ "$node/node_modules/.package-lock.json" -nt "$node/package-lock.json" ]; then
    (cd "$node" && npm ci --no-audit --no-fund --silent) || { echo "npm ci failed in $node" >&2; exit 1; }
fi

# ip and iptables for the transparent-mode test (root only; it skips otherwise).
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    PATH="$PATH:/usr/sbin:/sbin"
    if ! command -v iptables >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1; then
        { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iptables iproute2; } \
            >/dev/null || { echo "apt-get install iptables iproute2 failed" >&2; exit 1; }
    fi
    # redis-server for the shared budget store's tests (tests/state; they skip without it).
    if ! command -v redis-server >/dev/null 2>&1; then
        { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server; } \
            >/dev/null || { echo "apt-get install redis-server failed" >&2; exit 1; }
    fi
fi
