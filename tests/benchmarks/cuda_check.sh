#!/usr/bin/env bash
# The CUDA path, checked by hand on a machine with an NVIDIA GPU (CI has none):
#
#     bash tests/benchmarks/cuda_check.sh [OUT_DIR]       # default benchmark-results/cuda
#
# 1. `python -m model.verify` on the GPU, correct and with a bug;
# 2. greedy generation of the trained tiny checkpoint in float32, bfloat16 and float16 recites what
#    it learned, through the same functions as `python -m model.generate`;
# 3. the speed benchmark, unchanged, on the GPU (fewer repeats: a GPU's runs vary less).
# Needs the model's requirements only (torch with CUDA, transformers, tiktoken, psutil); gradio is optional.
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${1:-benchmark-results/cuda}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
python=${PYTHON:-python3}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

echo "== checkpoints =="
"$python" - "$scratch" <<'EOF' || exit 1
import sys
from pathlib import Path

import torch
import transformers

from tests.checkpoints import GPT2_SMALL, build_checkpoint, build_trained_checkpoint

print(f"torch {torch.__version__}, transformers {transformers.__version__}, CUDA {torch.version.cuda}, "
      f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO GPU VISIBLE'}")
build_checkpoint(Path(sys.argv[1]) / "gpt2", seed=0, **GPT2_SMALL)
build_trained_checkpoint(Path(sys.argv[1]) / "trained")
EOF

echo "== python -m model.verify --device cuda =="
"$python" -m model.verify --model "$scratch/gpt2" --device cuda 2>&1 | tee "$out/verify.txt"
echo "exit status: $?"
"$python" -m model.verify --model "$scratch/gpt2" --device cuda --bug not_transposed --json > "$out/verify-bug.json"
echo "with --bug not_transposed: exit status $? (0: the mistake was caught)"

echo "== greedy recitation on the GPU, every dtype =="
"$python" - "$scratch/trained" <<'EOF' | tee "$out/recitation.txt"
import sys

from model.loading.reference import load_reference
from model.sampling import SamplingSettings
from model.serving.text import complete
from model.serving.writer import load_writer
from tests.checkpoints import MEMORISED, RECITATION_PROMPTS

reference = load_reference(sys.argv[1], "cuda")
for dtype in ("float32", "bfloat16", "float16"):
    model = load_writer(reference, dtype)
    for prompt, sentence in zip(RECITATION_PROMPTS, MEMORISED):
        text = prompt + complete(model, prompt, SamplingSettings(max_new_tokens=24, temperature=0))
        print(f"{dtype:9} {'OK    ' if text == sentence else 'NOT OK'} {text!r}")
EOF

echo "== python -m tests.benchmarks.speed --device cuda =="
"$python" -m tests.benchmarks.speed --model "$scratch/gpt2" --device cuda --repeats 3 --repeats-long 2 \
    --quiet-wait 2 --out "$out/speed.json" 2>&1 | tee "$out/speed.txt"
