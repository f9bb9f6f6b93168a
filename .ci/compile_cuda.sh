#!/usr/bin/env bash
# Compile-only CI check of the CUDA C++ extension (no GPU needed):
#   1. every csrc/*.cu with nvcc for sm_90, warnings as errors (nvcc/cudafe/ptxas: --Werror all-warnings, host code:
#      -Wall -Wextra -Werror, ptxas: register spills and local-memory use reported, hence errors);
#   2. the full pybind11 module flowfm_kernels._C through CMake (FLOWFM_WERROR=ON) in a temporary build directory,
#      then imports it and checks that it exposes the same functions as the CuPy JIT twin;
#   3. the NVRTC JIT build of the same sources with every template instantiation (what the CuPy fallback compiles),
#      with libnvrtc from the toolkit, site-packages, $FLOWFM_NVRTC_LIB or a private download of the
#      nvidia-cuda-nvrtc wheel (skipped with a note when none can be had, or with FLOWFM_CI_NVRTC=0).
# Exits non-zero on the first error. Environment: PYTHON (default: python3), CUDA_HOME / CUDA_PATH (default
# /usr/local/cuda, then /opt/cuda), FLOWFM_CUDA_ARCH (default 90), JOBS (default: nproc), FLOWFM_CI_NVRTC (auto|0).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
ARCH="${FLOWFM_CUDA_ARCH:-90}"
ARCH="${ARCH#sm_}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"

CUDA_ROOT=""
for candidate in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda /opt/cuda; do
  if [[ -n "$candidate" && -d "$candidate/include" ]]; then CUDA_ROOT="$candidate"; break; fi
done
if [[ -z "$CUDA_ROOT" ]]; then
  echo "compile_cuda.sh: no CUDA toolkit found (set CUDA_HOME)" >&2
  exit 1
fi
if [[ -x "$CUDA_ROOT/bin/nvcc" ]]; then NVCC="$CUDA_ROOT/bin/nvcc"; else NVCC="${NVCC:-$(command -v nvcc)}"; fi
if [[ -z "$NVCC" ]]; then
  echo "compile_cuda.sh: nvcc not found under $CUDA_ROOT/bin nor on PATH" >&2
  exit 1
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/flowfm-cuda-ci.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

echo "== compile_cuda.sh: $("$NVCC" --version | tail -n 2 | head -n 1), arch sm_$ARCH, CUDA root $CUDA_ROOT"

# pybind11 for the CMake step: the interpreter's own, else a private copy in the temporary directory (an editable
# install builds in an isolated environment, so the project's venv need not have it; nothing is installed into it)
if ! "$PYTHON" -c "import pybind11" >/dev/null 2>&1; then
  echo "-- pybind11 not importable by $PYTHON: installing it into $TMP/pydeps"
  "$PYTHON" -m pip install -q --disable-pip-version-check --target "$TMP/pydeps" "pybind11>=2.10"
  export PYTHONPATH="$TMP/pydeps${PYTHONPATH:+:$PYTHONPATH}"
fi

# 1. each translation unit, strict
shopt -s nullglob
sources=("$ROOT"/csrc/*.cu)
if (( ${#sources[@]} == 0 )); then
  echo "compile_cuda.sh: no csrc/*.cu found" >&2
  exit 1
fi
for src in "${sources[@]}"; do
  name="$(basename "$src" .cu)"
  echo "-- nvcc $name.cu"
  "$NVCC" -c "$src" -o "$TMP/$name.o" -std=c++17 -O3 -DNDEBUG \
    -gencode "arch=compute_$ARCH,code=[sm_$ARCH,compute_$ARCH]" \
    -I "$ROOT/csrc" \
    --Werror all-warnings \
    -Xcompiler -Wall,-Wextra,-Werror,-fPIC \
    -Xptxas -warn-spills,-warn-lmem-usage
done

# 2. the module through CMake
echo "-- cmake: full pybind11 module"
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
cmake -S "$ROOT" -B "$TMP/build" "${generator[@]}" \
  -DPython_EXECUTABLE="$PYTHON" \
  -DCMAKE_CUDA_COMPILER="$NVCC" \
  -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
  -DCMAKE_BUILD_TYPE=Release \
  -DFLOWFM_WERROR=ON >"$TMP/cmake-configure.log" 2>&1 || { cat "$TMP/cmake-configure.log" >&2; exit 1; }
cmake --build "$TMP/build" -j "$JOBS"

so="$(ls "$TMP"/build/_C*.so)"
echo "-- import check of $(basename "$so")"
FLOWFM_CI_SO_DIR="$TMP/build" PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - <<'EOF'
import importlib.util
import os
import sys

so_dir = os.environ["FLOWFM_CI_SO_DIR"]
sys.path.insert(0, so_dir)
import _C  # noqa: E402  (the freshly built module, imported as a top-level name)

functions = {n for n in dir(_C) if callable(getattr(_C, n)) and not n.startswith("_")}
print(f"_C exposes {len(functions)} functions: {', '.join(sorted(functions))}")
plan = _C.gn_fwd_plan(8, 64, 300, 8, 132)
assert plan["fused"] and plan["cache"], plan
try:
    from flowfm_kernels.cuda import _cupy_jit
except Exception as exc:  # flowfm_kernels needs torch; without it only the import above is checked
    print(f"(skipping the _C / JIT API comparison: {exc!r})")
    sys.exit(0)
jit = {n for n in dir(_cupy_jit.JitKernels) if not n.startswith("_") and callable(getattr(_cupy_jit.JitKernels, n))}
jit.discard("compile")
if functions != jit:
    sys.exit(f"_C and the CuPy JIT module differ: only in _C {sorted(functions - jit)}, only in JIT {sorted(jit - functions)}")
for shape in [(1, 64, 100000, 1), (4, 64, 300, 8), (256, 256, 75, 32), (3, 6, 17, 3), (2, 8192, 2, 1)]:
    for sms in (1, 66, 132):
        a, b = _C.gn_fwd_plan(*shape, sms), _cupy_jit.gn_fwd_plan(*shape, sms)
        if a != b:
            sys.exit(f"gn_fwd_plan{shape + (sms,)}: _C {a} != JIT {b}")
print("_C and the CuPy JIT twin expose the same functions and launch plans")
EOF

# 3. the NVRTC JIT build: libnvrtc from the toolkit / site-packages / $FLOWFM_NVRTC_LIB, else (FLOWFM_CI_NVRTC=auto,
#    the default) a private copy of the nvidia-cuda-nvrtc wheel matching the toolkit's major version; a failed
#    download only skips this step. FLOWFM_CI_NVRTC=0 skips it.
echo "-- NVRTC JIT build"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
find_nvrtc='import sys; from flowfm_kernels.cuda._nvrtc_check import find_libnvrtc; p = find_libnvrtc(); print(p or ""); sys.exit(0 if p else 3)'
if [[ "${FLOWFM_CI_NVRTC:-auto}" == "0" ]]; then
  echo "(skipped: FLOWFM_CI_NVRTC=0)"
elif ! "$PYTHON" -c "import flowfm_kernels.cuda._nvrtc_check" >/dev/null 2>&1; then
  echo "(skipped: flowfm_kernels is not importable by $PYTHON, e.g. no torch)"
else
  if ! CUDA_HOME="$CUDA_ROOT" "$PYTHON" -c "$find_nvrtc" >/dev/null 2>&1; then
    major="$("$NVCC" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p' | head -n 1)"
    echo "   libnvrtc not found: fetching nvidia-cuda-nvrtc ${major}.x into $TMP/nvrtc"
    if "$PYTHON" -m pip install -q --disable-pip-version-check --no-deps --target "$TMP/nvrtc" \
        "nvidia-cuda-nvrtc>=${major},<$((major + 1))" >"$TMP/nvrtc-pip.log" 2>&1; then
      lib="$(find "$TMP/nvrtc" -name 'libnvrtc.so*' ! -name '*builtins*' | sort | head -n 1)"
      [[ -n "$lib" ]] && export FLOWFM_NVRTC_LIB="$lib"
    else
      echo "   (download failed: $(tail -n 1 "$TMP/nvrtc-pip.log"))"
    fi
  fi
  if CUDA_HOME="$CUDA_ROOT" "$PYTHON" -c "$find_nvrtc" >/dev/null 2>&1; then
    CUDA_HOME="$CUDA_ROOT" "$PYTHON" -m flowfm_kernels.cuda._nvrtc_check --arch "sm_$ARCH"
  else
    echo "(skipped: libnvrtc not available; set FLOWFM_NVRTC_LIB to check the JIT path)"
  fi
fi

echo "== compile_cuda.sh: OK"
