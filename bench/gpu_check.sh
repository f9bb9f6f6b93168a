#!/usr/bin/env bash
# One-shot GPU check for a lent GPU machine (no network there): build the CUDA module, run every GPU-marked test and
# the CPU suite's kernel tests on CUDA, record the environment, and write everything to $OUT (default ./gpu_out).
# Usage on the GPU machine, from the repository root:  OUT=/some/dir bash bench/gpu_check.sh
# Everything is written to a work folder, then packed as $OUT/gpu_check.tgz; the benchmark JSON files and a log
# summary are also copied to $OUT directly (the device tool returns at most 8 files).
set -uo pipefail
FINAL="${OUT:-gpu_out}"
mkdir -p "$FINAL"
OUT="$(mktemp -d "${TMPDIR:-/tmp}/flowfm-gpu-check.XXXXXX")"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
status=0

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  "$PY" -c 'import torch, triton, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'
  git rev-parse HEAD 2>/dev/null
} > "$OUT/environment.txt" 2>&1

# 1. install with the CUDA extension (build errors are fatal with FLOWFM_BUILD_CUDA=1)
FLOWFM_BUILD_CUDA=1 "$PY" -m pip install --no-deps --no-build-isolation -q -e . > "$OUT/build.log" 2>&1 || status=1
"$PY" -m flowfm info > "$OUT/info.txt" 2>&1 || status=1

# 2. the GPU tests, then the kernel and model tests on CUDA tensors (their modules run compiled kernels when CUDA is present)
"$PY" -m pytest -q -m gpu -rs --junitxml="$OUT/gpu_tests.xml" tests > "$OUT/gpu_tests.log" 2>&1 || status=1
"$PY" -m pytest -q -rs --junitxml="$OUT/kernel_tests.xml" tests/test_kernels_*.py tests/test_backend_parity.py \
  tests/test_graphs.py tests/test_cuda_backend.py > "$OUT/kernel_tests.log" 2>&1 || status=1

# 3. the benchmark suites in full on CUDA (JSON + markdown into $OUT; BENCH_ARGS adds flags, e.g. --quick;
#    BENCH_TIMEOUT caps each suite in seconds)
for suite in kernels sampling training; do
  timeout "${BENCH_TIMEOUT:-900}" "$PY" -m bench.$suite --device cuda --out "$OUT" ${BENCH_ARGS:-} \
    > "$OUT/bench_$suite.log" 2>&1 || status=1
done
"$PY" -m bench.render --results "$OUT" --out "$OUT/bench_README.md" > "$OUT/bench_render.log" 2>&1 || status=1

tail -n 3 "$OUT"/*.log | tee "$FINAL/summary.txt"
cp "$OUT"/*_cuda.json "$FINAL"/ 2>/dev/null
tar -czf "$FINAL/gpu_check.tgz" -C "$OUT" .
exit $status
