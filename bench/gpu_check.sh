#!/usr/bin/env bash
# One command for a lent GPU machine (no network there), about 7 minutes, nothing lost when killed:
#
#   OUT=/some/dir bash bench/gpu_check.sh                 # on the GPU machine, from the repository root
#   DRY_RUN=1 OUT=/tmp/x bash bench/gpu_check.sh          # every step's plumbing on CPU (tiny sizes; < 1 minute)
#
# Steps, in order of evidence per second (each with its own hard cap, clipped to what is left of BUDGET_S; a step
# that cannot get its minimum is skipped and says 'skipped (budget)'):
#   env             versions (python, torch, CUDA, triton, cupy, pybind11, pytest plugins), nvidia-smi, nvcc, the
#                   CUDA root, `flowfm info`, the commit
#   build           (in the background) pip install --no-deps --no-build-isolation -e . with FLOWFM_BUILD_CUDA=1
#   smoke_triton    (meanwhile) every Triton op vs its eager reference at realistic sizes, fp32 + bf16: error,
#                   median ms, GB/s, x-eager, the copy bandwidth of the same run        (bench/gpu_smoke.py triton)
#   cuda_ops        the CUDA C++ ops through _C and through the CuPy JIT twin, same rows   (gpu_smoke.py cuda)
#   graphs          fast_sample eager loop vs CUDA graph at equal NFE, batch 1 and 256    (gpu_smoke.py graphs)
#   gpu_tests       pytest -m gpu, -n 8 --dist loadfile (file order kept per worker), --timeout per test
#   bench_kernels   bench.kernels on CUDA, no inductor (--compile off)
#   bench_sampling  bench.sampling reduced: batch 1 and 256, Euler-10 / Heun-5 vs DDIM-10 / 50, no DDPM-1000
#   bench_training  bench.training (FlowFM vs diffusion vs SSL step, fused vs eager kernels)
#   bench_ddpm      (only when time remains) DDPM-1000 vs DDIM-50 vs Euler-10 at batch 256, side by side
#   kernel_tests    (only when time remains) the rest (not gpu-marked) of the kernel / dispatch / graph test modules
#   bench_compile   (only when time remains) bench.kernels with torch.compile (inductor) of the references
#   render          the markdown tables of the JSON results (into logs.tgz)
#
# After EVERY step (and every 20 s while one runs), $OUT is rewritten: summary.txt (per step: status, exit code,
# seconds, cap, timed out or not, the last lines of its log), logs.tgz (every log, junit XML and JSON) and the JSON
# results so far (at most 6: gpu_smoke, kernels, sampling, training, sampling_ddpm, kernels_compile), flat: at most
# 8 files, no folder. Every ratio in them is measured side by side in the same run.
#
# Environment: OUT (default ./gpu_out), BUDGET_S (default 420; run the device call with timeout_s ~480), DRY_RUN=1,
# PYTHON (default python3), ONLY_STEPS=a,b (run only those; the others are listed as 'skipped (not selected)'),
# CAP_<step>=seconds (override one step's cap, e.g. CAP_gpu_tests=60), TEST_TIMEOUT_S (per test, default 120),
# TEST_WORKERS (default 8), KEEP_WORK=1 (keep the work folder under $TMPDIR; everything in it is in logs.tgz anyway).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$REPO/bench/$(basename "${BASH_SOURCE[0]}")"
STEPS=(env build smoke_triton cuda_ops graphs gpu_tests bench_kernels bench_sampling bench_training bench_ddpm
       kernel_tests bench_compile render)
JSON_NAMES=(gpu_smoke kernels sampling training sampling_ddpm kernels_compile)  # <name>_<device>.json, <= 6

now() { if [[ -n "${EPOCHREALTIME:-}" ]]; then printf '%s' "${EPOCHREALTIME/,/.}"; else date +%s.%N; fi; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ------------------------------------------------------------------------------------ internal step bodies (__name)
# Each runs as `timeout CAP bash gpu_check.sh __name` so that its whole process group is killed at the cap.
if [[ "${1:-}" == __* ]]; then
  cd "$REPO"
  PY="${PYTHON:-python3}"
  DEV=cuda; QUICK=(); THREADS=()
  if [[ "${DRY_RUN:-0}" == 1 ]]; then DEV=cpu; QUICK=(--quick); THREADS=(--threads 1); fi
  J="${WORK_JSON:-gpu_out}"; WORK_LOGS="${WORK_LOGS:-gpu_out}"
  case "$1" in
    __env)
      date -u; uname -a; echo "nproc $(nproc)"; df -h . | tail -n 1
      git rev-parse HEAD 2>/dev/null || echo "commit: not a git checkout"
      git status --short 2>/dev/null | head -n 20
      (nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv && nvidia-smi) \
        2>&1 | head -n 40
      NVCC_PATH="$(command -v nvcc || echo none)"
      echo "nvcc on PATH: $NVCC_PATH -> $(readlink -f "$NVCC_PATH" 2>/dev/null)"
      nvcc --version 2>&1 | tail -n 2
      "$PY" - <<'EOF'
import importlib.metadata as md, importlib.util, os, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("torch", "triton", "cupy", "cupy-cuda13x", "cupy-cuda12x", "pybind11", "numpy", "setuptools", "pip",
             "scipy", "scikit-learn", "matplotlib", "safetensors", "pytest", "pytest-xdist", "pytest-timeout",
             "onnxruntime", "onnxruntime-gpu", "nvtx"):
    try:
        print(f"{name:18s} {md.version(name)}")
    except md.PackageNotFoundError:
        pass
spec = importlib.util.spec_from_file_location("_flowfm_cuda_build", os.path.join("flowfm_kernels", "cuda", "_build.py"))
b = importlib.util.module_from_spec(spec); sys.modules[spec.name] = b; spec.loader.exec_module(b)
root = b.find_cuda_root()
print("CUDA_HOME", os.environ.get("CUDA_HOME"), "-> CUDA root", root, "nvcc", b.find_nvcc(root))
import torch
print("torch.version.cuda", torch.version.cuda, "cuda available", torch.cuda.is_available())
# `flowfm info`: versions, GPU, every backend and why one is unavailable. FLOWFM_CUDA_IMPL=ext: _C is not built
# yet and its CuPy JIT twin would compile here; the cuda_ops step reports both.
os.environ["FLOWFM_CUDA_IMPL"] = "ext"
from flowfm.cli import main
main(["info"])
EOF
      ;;
    __build)
      if [[ "${DRY_RUN:-0}" == 1 ]]; then  # no install on the dev machine: the build decision only
        "$PY" -c 'import importlib.util as u, sys; s = u.spec_from_file_location("b", "flowfm_kernels/cuda/_build.py")
b = u.module_from_spec(s); sys.modules["b"] = b; s.loader.exec_module(b); print(b.decide_from_environment())'
      else
        FLOWFM_BUILD_CUDA=1 "$PY" -m pip install --no-deps --no-build-isolation --no-index -v -e . \
          && "$PY" -c 'import flowfm_kernels._C as c; print("built", c.__file__)'
      fi ;;
    __smoke_triton)
      [[ "${DRY_RUN:-0}" == 1 ]] && export TRITON_INTERPRET=1
      "$PY" -m bench.gpu_smoke triton --device "$DEV" --out "$J" "${QUICK[@]}" "${THREADS[@]}" ;;
    __cuda_ops) "$PY" -m bench.gpu_smoke cuda --device "$DEV" --out "$J" "${QUICK[@]}" "${THREADS[@]}" ;;
    __graphs) "$PY" -m bench.gpu_smoke graphs --device "$DEV" --out "$J" "${QUICK[@]}" "${THREADS[@]}" ;;
    __gpu_tests|__kernel_tests)
      PAR=(); TMO=()
      "$PY" -c 'import xdist' 2>/dev/null && PAR=(-n "${TEST_WORKERS:-8}" --dist loadfile)
      "$PY" -c 'import pytest_timeout' 2>/dev/null && TMO=(--timeout "${TEST_TIMEOUT_S:-120}")
      [[ ${#PAR[@]} == 0 ]] && echo "pytest-xdist not installed: running in one process"
      if [[ "$1" == __gpu_tests ]]; then
        mapfile -t FILES < <(grep -l 'mark\.gpu' tests/test_*.py)
        SEL=(-m gpu)
      else
        FILES=(tests/test_kernels_*.py tests/test_backend_parity.py tests/test_dispatch.py tests/test_graphs_*.py
               tests/test_cuda_*.py)
        SEL=(-m "not gpu")  # the gpu-marked ones ran in gpu_tests
        # dry run: plumbing only (collect one module); the CPU suite runs these elsewhere
        [[ "${DRY_RUN:-0}" == 1 ]] && { SEL=(--collect-only); FILES=(tests/test_dispatch.py); }
      fi
      # -v: one line per finished test, so a run cut short by its cap still shows how far it got
      "$PY" -m pytest -v -rfEs --durations=10 -p no:cacheprovider "${SEL[@]}" "${PAR[@]}" "${TMO[@]}" \
        --junitxml="$WORK_LOGS/${1#__}.xml" "${FILES[@]}" ;;
    __bench_kernels)
      if [[ "${DRY_RUN:-0}" == 1 ]]; then R=(--repeats 2); else R=(--repeats 10); fi
      "$PY" -m bench.kernels --device "$DEV" --out "$J" --compile off "${R[@]}" "${QUICK[@]}" "${THREADS[@]}" ;;
    __bench_sampling)
      if [[ "${DRY_RUN:-0}" == 1 ]]; then
        A=(--preset tiny --batches 1 --repeats 2)
      else
        A=(--batches 1,256 --flow euler:10,heun:5 --ddim 10,50 --no-ddpm --repeats 5)
      fi
      "$PY" -m bench.sampling --device "$DEV" --out "$J" "${A[@]}" "${QUICK[@]}" "${THREADS[@]}" ;;
    __bench_training)
      if [[ "${DRY_RUN:-0}" == 1 ]]; then R=(--repeats 2); else R=(--repeats 10); fi
      "$PY" -m bench.training --device "$DEV" --out "$J" "${R[@]}" "${QUICK[@]}" "${THREADS[@]}" ;;
    __bench_ddpm)
      # dry run: the suite's command line only (bench_sampling already ran the same code on CPU)
      [[ "${DRY_RUN:-0}" == 1 ]] && exec "$PY" -m bench.sampling --help
      mkdir -p "$J/ddpm"
      "$PY" -m bench.sampling --device "$DEV" --out "$J/ddpm" --batches 256 --flow euler:10 --ddim 50 --ddpm \
        --repeats 3 && mv -f "$J/ddpm/sampling_$DEV.json" "$J/sampling_ddpm_$DEV.json" ;;
    __bench_compile)
      # dry run: the command line only (inductor's C++ build takes minutes on a small CPU)
      [[ "${DRY_RUN:-0}" == 1 ]] && exec "$PY" -m bench.kernels --help
      mkdir -p "$J/compile"
      "$PY" -m bench.kernels --device "$DEV" --out "$J/compile" --compile on --repeats 10 \
        && mv -f "$J/compile/kernels_$DEV.json" "$J/kernels_compile_$DEV.json" ;;
    __render)
      mkdir -p "$J/render"
      cp "$J"/*.json "$J/render/" 2>/dev/null
      rm -f "$J/render/gpu_smoke_"*.json  # not a bench suite
      "$PY" -m bench.render --results "$J/render" --out "$WORK_LOGS/bench_README.md" --no-plots ;;
    *) echo "unknown step body $1" >&2; exit 2 ;;
  esac
  exit $?
fi

# -------------------------------------------------------------------------------------------------------- driver
cd "$REPO"
FINAL="${OUT:-gpu_out}"
mkdir -p "$FINAL" && FINAL="$(cd "$FINAL" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/flowfm-gpu-check.XXXXXX")"
export WORK_LOGS="$WORK/logs" WORK_JSON="$WORK/json"
mkdir -p "$WORK_LOGS" "$WORK_JSON" "$WORK/steps"
export PYTHON="${PYTHON:-python3}" PYTHONUNBUFFERED=1 PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1  # nothing from the network
BUDGET="${BUDGET_S:-420}"
DRY="${DRY_RUN:-0}"
T0="$(now)"
MODE=$([[ "$DRY" == 1 ]] && echo "dry run (CPU plumbing, tiny sizes, TRITON_INTERPRET=1)" || echo "gpu")

left() { awk -v a="$T0" -v b="$(now)" -v n="$BUDGET" 'BEGIN { printf "%d", n - (b - a) }'; }
index_of() {
  local i
  for i in "${!STEPS[@]}"; do [[ "${STEPS[$i]}" == "$1" ]] && { printf '%02d' "$i"; return; }; done
}

# record NAME STATUS EXIT SECONDS CAP TIMED_OUT NOTE   (one TSV line per step, rewritten as the step progresses)
record() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "${7:-}" > "$WORK/steps/$(index_of "$1").tsv.tmp"
  mv -f "$WORK/steps/$(index_of "$1").tsv.tmp" "$WORK/steps/$(index_of "$1").tsv"
}

summary() {
  local name f
  echo "FlowFM bench/gpu_check.sh  mode: $MODE"
  echo "budget ${BUDGET} s, elapsed $(elapsed "$T0") s," \
    "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "written $(date -u +%Y-%m-%dT%H:%M:%SZ); JSON results and logs.tgz beside this file"
  echo
  printf '%-15s %-24s %5s %8s %6s %-9s %s\n' step status exit seconds cap_s timed_out note
  for name in "${STEPS[@]}"; do
    f="$WORK/steps/$(index_of "$name").tsv"
    if [[ -f "$f" ]]; then
      IFS=$'\t' read -r _ st rc secs cap tmo note < "$f"
      printf '%-15s %-24s %5s %8s %6s %-9s %s\n' "$name" "$st" "$rc" "$secs" "$cap" "$tmo" "$note"
    else
      printf '%-15s %-24s %5s %8s %6s %-9s %s\n' "$name" "pending" - - - - ""
    fi
  done
  for name in "${STEPS[@]}"; do
    f="$WORK_LOGS/$name.log"
    [[ -s "$f" ]] || continue
    echo
    echo "== $name (last lines of logs/$name.log)"
    tail -n "${SUMMARY_TAIL:-12}" "$f" | cut -c1-240
  done
}

publish_unlocked() {
  local j name src
  summary > "$FINAL/.summary.txt.tmp" 2>&1 && mv -f "$FINAL/.summary.txt.tmp" "$FINAL/summary.txt"
  # exit 1 = "file changed as we read it" (a running step's log): the archive is still good
  tar --warning=no-file-changed -czf "$FINAL/.logs.tgz.tmp" -C "$WORK" logs json steps 2>/dev/null
  (( $? <= 1 )) && mv -f "$FINAL/.logs.tgz.tmp" "$FINAL/logs.tgz"
  for name in "${JSON_NAMES[@]}"; do
    for src in "$WORK_JSON/${name}_"{cuda,cpu}.json; do
      [[ -f "$src" ]] || continue
      j="$(basename "$src")"
      cp "$src" "$FINAL/.$j.tmp" && mv -f "$FINAL/.$j.tmp" "$FINAL/$j"
    done
  done
  rm -f "$FINAL"/.*.tmp
}

publish() {  # serialised with the periodic publisher
  if command -v flock >/dev/null; then
    ( flock 9; publish_unlocked ) 9> "$WORK/publish.lock"
  else
    publish_unlocked
  fi
}

selected() { [[ -z "${ONLY_STEPS:-}" ]] || [[ ",$ONLY_STEPS," == *",$1,"* ]]; }

# plan NAME CAP MIN -> sets STEP_CAP, or records the skip and returns 1
plan() {
  local name=$1 cap=$2 min=$3 remaining override="CAP_$1"
  cap="${!override:-$cap}"
  if ! selected "$name"; then record "$name" "skipped (not selected)" - 0 "$cap" no; publish; return 1; fi
  remaining="$(left)"
  if (( remaining < min || remaining < 1 )); then
    record "$name" "skipped (budget)" - 0 "$cap" no "needs ${min} s, ${remaining} s left"; publish; return 1
  fi
  (( cap > remaining )) && cap=$remaining
  STEP_CAP=$cap
  return 0
}

# finish NAME RC START CAP [END]: status from the exit code of `timeout` (124: cap reached, 137: killed after it)
finish() {
  local name=$1 rc=$2 secs status tmo=no
  secs="$(awk -v a="$3" -v b="${5:-$(now)}" 'BEGIN { printf "%.1f", b - a }')"
  if (( rc == 124 || rc == 137 )); then status="timed out (cap ${4} s)"; tmo=yes
  elif (( rc == 0 )); then status="ok"
  else status="failed"; fi
  record "$name" "$status" "$rc" "$secs" "$4" "$tmo"
  publish
}

# step NAME CAP MIN [ARGS...]: runs the body __NAME under its cap, in the foreground
step() {
  local name=$1 cap=$2 min=$3 start rc; shift 3
  plan "$name" "$cap" "$min" || return 0
  record "$name" running - - "$STEP_CAP" -; publish
  start="$(now)"
  # in the background + wait, so that a TERM to this script is handled at once (on_signal), not after the step
  timeout -k 5 "$STEP_CAP" bash "$SELF" "__$name" "$@" > "$WORK_LOGS/$name.log" 2>&1 &
  CURRENT=$!
  wait "$CURRENT"; rc=$?
  CURRENT=
  finish "$name" "$rc" "$start" "$STEP_CAP"
}

# step_bg NAME CAP MIN: the same in the background; step_wait NAME collects it (exit code and end time from the
# job's own record, so its seconds are its own, not the time until it was waited for)
declare -A BG_PID BG_START BG_CAP
step_bg() {
  local name=$1
  plan "$name" "$2" "$3" || return 0
  record "$name" "running (background)" - - "$STEP_CAP" -; publish
  BG_START[$name]="$(now)"; BG_CAP[$name]=$STEP_CAP
  (
    timeout -k 5 "$STEP_CAP" bash "$SELF" "__$name" > "$WORK_LOGS/$name.log" 2>&1 &
    pid=$!
    trap 'kill -TERM "$pid" 2>/dev/null' TERM
    wait "$pid"; rc=$?
    (( rc > 128 )) && { wait "$pid"; rc=$?; }  # the wait was interrupted by TERM: collect the step itself
    echo "$rc $(now)" > "$WORK/bg_$name.done"
  ) &
  BG_PID[$name]=$!
}
step_wait() {
  local name=$1 rc end secs
  [[ -n "${BG_PID[$name]:-}" ]] || return 0
  wait "${BG_PID[$name]}"
  unset "BG_PID[$name]"
  read -r rc end < "$WORK/bg_$name.done" || { rc=1; end="$(now)"; }
  finish "$name" "$rc" "${BG_START[$name]}" "${BG_CAP[$name]}" "$end"
}

CURRENT=
on_signal() {  # the device tool's own limit: stop the running steps, say so, keep what there is
  local name f pid
  for pid in $CURRENT "${BG_PID[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for name in "${STEPS[@]}"; do
    f="$WORK/steps/$(index_of "$name").tsv"
    [[ -f "$f" ]] && grep -q $'\trunning' "$f" && record "$name" "killed (gpu_check.sh got a signal)" - - - yes
  done
  publish
  exit 143
}
trap on_signal TERM INT

( trap - TERM INT; while sleep "${PUBLISH_EVERY_S:-20}"; do publish; done ) > /dev/null 2>&1 &
PUBLISHER=$!
stop_publisher() {  # under the lock, so the periodic publisher is never stopped half-way through writing $OUT
  if command -v flock >/dev/null; then
    ( flock 9; kill "$PUBLISHER" 2>/dev/null ) 9> "$WORK/publish.lock"
  else
    kill "$PUBLISHER" 2>/dev/null
  fi
  [[ -n "${KEEP_WORK:-}" ]] || rm -rf "$WORK"
}
trap stop_publisher EXIT

for name in "${STEPS[@]}"; do record "$name" pending - - - -; done
publish

step env 40 5
step_bg build 240 30
step smoke_triton 150 20
step_wait build
step cuda_ops 60 15
step graphs 60 15
step gpu_tests 150 30
step bench_kernels 90 30
step bench_sampling 80 30
step bench_training 60 20
step bench_ddpm 60 45
step kernel_tests 150 90
step bench_compile 150 120
step render 30 5

publish
rc=0
for name in "${STEPS[@]}"; do
  f="$WORK/steps/$(index_of "$name").tsv"
  IFS=$'\t' read -r _ st _ < "$f"
  [[ "$st" == ok || "$st" == skipped* ]] || rc=1
done
echo "gpu_check: $(grep -c . "$FINAL/summary.txt") summary lines in $FINAL/summary.txt; status $rc"
exit $rc
