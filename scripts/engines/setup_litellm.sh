#!/usr/bin/env bash
# Install the LiteLLM proxy into its own environment (.engines/litellm), to run it as a
# gateway in front of a real OpenAI-compatible engine (vLLM) for comparisons. Idempotent.
#
#   bash scripts/engines/setup_litellm.sh
#
# Environment: PYTHON (interpreter that creates the venv, default python3).
# Exit status: 0 ready, 1 a step failed, 2 LiteLLM cannot be installed here.
set -euo pipefail

# Pinned on purpose, never "latest": some LiteLLM releases on PyPI were compromised (malicious
# code was published as 1.82.7, 1.82.8 and 1.107.0, since removed). 1.80.5 predates them,
# installs cleanly with the [proxy] extra and is checked below never to be one of them.
LITELLM_VERSION="1.80.5"
BAD_VERSIONS=" 1.82.7 1.82.8 1.107.0 "

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
VENV=".engines/litellm"
PY="$VENV/bin/python"

fail() { echo "setup_litellm: ERROR: $*" >&2; exit "${2:-1}"; }

installed_version() {
    "$PY" -c 'from importlib.metadata import version; print(version("litellm"))' 2>/dev/null
}

proxy_imports() {
    LITELLM_LOCAL_MODEL_COST_MAP=True "$PY" -c 'import litellm.proxy.proxy_server'
}

if [ -x "$PY" ] && [ "$(installed_version)" = "$LITELLM_VERSION" ] && proxy_imports 2>/dev/null; then
    echo "setup_litellm: $VENV already has litellm $LITELLM_VERSION; nothing to install"
else
    start=$SECONDS
    echo "setup_litellm: creating $VENV"
    "${PYTHON:-python3}" -m venv "$VENV" || fail "could not create a venv at $VENV"
    "$PY" -m pip install --quiet --upgrade pip || fail "could not upgrade pip in $VENV"
    echo "setup_litellm: pip install litellm[proxy]==$LITELLM_VERSION"
    "$PY" -m pip install --quiet "litellm[proxy]==$LITELLM_VERSION" \
        || fail "pip could not install litellm[proxy]==$LITELLM_VERSION here" 2
    echo "setup_litellm: installed in $((SECONDS - start)) s"
    echo "setup_litellm: checking imports"
    proxy_imports || fail "the LiteLLM proxy does not import in $VENV (see the error above)" 2
fi

version="$(installed_version)" || fail "litellm is not installed in $VENV" 2
case "$BAD_VERSIONS" in
    *" $version "*) fail "litellm $version is a compromised release: delete $VENV" 2 ;;
esac
[ "$version" = "$LITELLM_VERSION" ] || fail "found litellm $version, expected $LITELLM_VERSION"

[ -x "$VENV/bin/litellm" ] || fail "$VENV/bin/litellm is missing" 2

echo "setup_litellm: ready (litellm $version, $(du -sh "$VENV" | cut -f1) in $VENV)"
