#!/usr/bin/env bash
# Every GPU measurement of the project in one command, for a short lease on a GPU machine:
#   bash bench/gpu_check.sh [OUTPUT_FOLDER]
# 1–4. bench/finetune_bench.py, one mode per process (a slow one cannot take the others' figures): padded
#      (SDPA, 8 and WaveCoder's 4 per device) and packed (the default, flex_attention without flash-attn;
#      and SDPA), tokens/s and MFU, ~1.1B Llama from a config;
# 5. bench/fsdp_smoke.py: FSDP through `accelerate launch`, checkpoint, resume, from_pretrained.
# Figures measured so far: bench/RESULTS.md.
# Each step has its own time limit, so a slow or failing one still leaves the others' figures.
# A machine without the project's packages (trl, datasets, Django) may bring them as wheels in .whl/
# (installed into /tmp/site here); PYTHON picks the interpreter (default: python3).
set -u
out="${1:-${OUT:-var/gpu-check}}"
mkdir -p "$out"
python="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if compgen -G ".whl/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
"$python" - <<'EOF' | tee -a "$out/gpu.txt"
import importlib.metadata as m
for name in ("torch", "transformers", "trl", "datasets", "accelerate", "peft", "pyarrow", "flash-attn"):
    try:
        print(name, m.version(name))
    except m.PackageNotFoundError:
        print(name, "not installed")
EOF

step() {  # step NAME SECONDS COMMAND...
    local name="$1" limit="$2"
    shift 2
    echo "=== $name (limit ${limit} s)"
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
    echo "=== $name: exit ${PIPESTATUS[0]}"
}
B=("$python" bench/finetune_bench.py --warmup 2 --steps 8)
step padded8 90 "${B[@]}" --modes padded
step padded4 90 "${B[@]}" --modes padded --padded-batch 4
step packed 120 "${B[@]}" --modes packed
step packed-sdpa 90 "${B[@]}" --modes packed --attention sdpa
step fsdp-smoke 110 "$python" bench/fsdp_smoke.py
