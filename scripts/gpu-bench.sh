#!/usr/bin/env bash
# The one command for a GPU machine: the benchmarks and the GPU tests, the figures that matter
# most first, so that a run cut short by its lease still has them:
#   0. host <-> GPU copies and the models on fresh vs reused frames, changing face counts;
#   1. full pipeline vs decode-only vs per-frame, 1080p (OpenCV, NVDEC) and 360p (OpenCV), all CPUs;
#   2. the same pinned to 4 CPUs (a g5.xlarge has 4 vCPUs);
#   3. models alone, batch 1 vs 32, fp32 vs fp16;
#   4. the GPU tests;
#   5. the PyAV and 360p NVDEC pipelines, with torch.profiler op tables.
# Writes logs and benchmark JSON to $BENCH_OUT (default out/gpu-bench) and prints each table as
# it comes.
#
#   scripts/gpu-bench.sh            # needs the project installed, ANALYZER_SHARED_DIR for media/weights
#   GPU_BENCH_STEPS="pipeline models" scripts/gpu-bench.sh   # only these steps (a short lease)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${BENCH_OUT:-out/gpu-bench}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
pytest=(python -m pytest -p no:cacheprovider -q -rs)
pipeline=benchmarks/test_bench_pipeline.py

# step NAME TIMEOUT_S COMMAND...: run one step, its output in $out/NAME.log, its tables on screen
step() {
    local name=$1 limit=$2
    shift 2
    if [ -n "${GPU_BENCH_STEPS:-}" ] && [[ " $GPU_BENCH_STEPS " != *" $name "* ]]; then return; fi
    echo "== $name ($(date +%T))"
    # shellcheck disable=SC2016  # sed addresses, not shell expansions
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.log" | sed -n -e '/-- \(pipeline vs\|FaceAnalyzer throughput\|host <-> GPU\)/,/^$/{p;d}' -e '/ in [0-9.]\+s\b/p'
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
# The worker asks for growable allocator segments (analyzer/analysis/pipeline.py); where the driver cannot
# map them, run without rather than lose the lease
if ! PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True python -c \
    "import torch; x = torch.empty(2**30, device='cuda'); del x; y = torch.empty(2**31, device='cuda')"; then
    echo "expandable_segments unusable here: running without" | tee -a "$out/gpu.txt"
    export PYTORCH_CUDA_ALLOC_CONF=""
fi

step transfer 120 "${pytest[@]}" benchmarks/test_bench_transfer.py --benchmark-json "$out/transfer.json"
step pipeline 300 "${pytest[@]}" "$pipeline" -k "(1080p and (opencv or nvdec)) or (360p and opencv)" \
    --benchmark-json "$out/pipeline.json"
step pipeline-4cpu 200 taskset -c 0-3 "${pytest[@]}" "$pipeline" -k "1080p and (opencv or nvdec)" \
    --benchmark-json "$out/pipeline-4cpu.json"
step models 150 "${pytest[@]}" benchmarks/test_bench_models.py --benchmark-json "$out/models.json"
# modules that need what the GPU machine lacks (psycopg, boto3) fail to collect: run the rest
step gpu-tests 200 "${pytest[@]}" -m gpu --continue-on-collection-errors tests
ANALYZER_BENCH_PROFILE="$out" step profile 120 "${pytest[@]}" "$pipeline" -k "1080p and opencv" \
    --benchmark-json "$out/profile.json"
ANALYZER_BENCH_PROFILE="$out" step pipeline-more 240 "${pytest[@]}" "$pipeline" -k "pyav or (360p and nvdec)" \
    --benchmark-json "$out/pipeline-more.json"
