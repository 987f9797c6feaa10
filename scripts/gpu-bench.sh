#!/usr/bin/env bash
# The one command for a GPU machine: the GPU tests, then the benchmarks (models batch 1 vs 32,
# fp32 vs fp16; decode only; full pipeline vs decode-only vs per-frame, with all CPUs and pinned
# to 4 like a g5.xlarge). Writes logs and benchmark JSON to $BENCH_OUT (default out/gpu-bench)
# and prints the summary tables last.
#
#   scripts/gpu-bench.sh            # needs the project installed, ANALYZER_SHARED_DIR for media/weights
set -uo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-out/gpu-bench}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
pytest=(python -m pytest -p no:cacheprovider -q -rs)

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"

echo "== GPU tests"
"${pytest[@]}" -m gpu tests 2>&1 | tee "$out/gpu-tests.log" | tail -15

echo "== models: batch 1 vs 32, fp32 vs fp16"
timeout 200 "${pytest[@]}" benchmarks/test_bench_models.py --benchmark-json "$out/models.json" 2>&1 \
    | tee "$out/models.log" | grep -v "^\s*$" | tail -25

echo "== pipeline vs decode-only vs per-frame, all CPUs (op tables in $out/profile-*.txt)"
ANALYZER_BENCH_PROFILE="$out" timeout 300 "${pytest[@]}" benchmarks/test_bench_pipeline.py -k 1080p --benchmark-json "$out/pipeline.json" 2>&1 \
    | tee "$out/pipeline.log" | sed -n '/pipeline vs decode-only/,$p'

echo "== the same pinned to 4 CPUs (g5.xlarge has 4 vCPUs)"
timeout 200 taskset -c 0-3 "${pytest[@]}" benchmarks/test_bench_pipeline.py -k "1080p and (opencv or nvdec)" \
    --benchmark-json "$out/pipeline-4cpu.json" 2>&1 | tee "$out/pipeline-4cpu.log" | sed -n '/pipeline vs decode-only/,$p'
