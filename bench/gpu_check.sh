#!/usr/bin/env bash
# One-shot GPU check for a lent GPU machine (no network there): build the CUDA module, run every GPU-marked test and
# the CPU suite's kernel tests on CUDA, record the environment, and write everything to $OUT (default ./gpu_out).
# Usage on the GPU machine, from the repository root:  OUT=/some/dir bash bench/gpu_check.sh
set -uo pipefail
OUT="${OUT:-gpu_out}"
mkdir -p "$OUT"
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

tail -n 3 "$OUT"/*.log
exit $status
