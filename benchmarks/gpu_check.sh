#!/usr/bin/env bash
# The prepared GPU run, in the order that spends a short device window best:
#   1. build with the CUDA module (sm_90 only, every core);
#   2. assert the module was built and loads and that JAX sees a GPU (else stop at once: a
#      CPU-only build would spend the window on failing tests);
#   3. import preflight: collect the test modules (an import error costs seconds, not minutes);
#   4. the `gpu` tests (tests/svd/test_cuda.py, with RRAE_FAST_REQUIRE_GPU=1);
#   5. the op's contract and extreme-scale tests with the GPU as JAX's default device;
#   6. the GPU benchmarks, one pytest run per group of cases;
#   7. the rest of the op suites, as time allows.
#
# Usage (repository root, on a machine with a CUDA GPU, nvcc, and JAX with CUDA, CuPy, nanobind,
# scikit-build-core, equinox, optax and pytest-benchmark installed; no internet needed):
#     OUT=gpu-results BUDGET=540 bash benchmarks/gpu_check.sh
# Each stage has its own time limit, cut to what is left of BUDGET (seconds for the whole
# script, 9 minutes by default), so the script ends inside it with what it had done. Writes
# into $OUT: summary.txt (one line per stage: status, seconds; written whatever happens),
# machine.txt, build.log, preflight.log, gpu_tests.log, op_contract.log, bench.log, bench.tgz
# (one pytest-benchmark JSON per group of cases, and bench.md, the report's tables) and
# op_tests.log. Exit status: the first failure.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-gpu-results}
mkdir -p "$OUT" "$OUT/bench"
PY=${PYTHON:-python3}
START=$(date +%s)
DEADLINE=$((START + ${BUDGET:-540}))
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
status=0
current=""
stage_start=0
step() {
  current=$1
  stage_start=$(date +%s)
  echo "== $(date -u +%H:%M:%S) $1"
}
# done_stage STATUS: one summary line for the stage that ends
done_stage() {
  printf '%-28s %-8s %4ss\n' "$current" "$1" "$(($(date +%s) - stage_start))" >>"$SUMMARY"
  current=""
}
# limit SECONDS: the smaller of SECONDS and what is left before the deadline (at least 1)
limit() {
  local left=$((DEADLINE - $(date +%s) - 5))
  local n=$(($1 < left ? $1 : left))
  echo $((n > 1 ? n : 1))
}
keep() { [ "$status" -ne 0 ] || status=$1; }
# record STATUS: ends the current stage with the status of its command
record() {
  if [ "$1" -eq 0 ]; then done_stage ok; else
    done_stage "failed:$1"
    keep "$1"
  fi
}
finish() {
  [ -z "$current" ] || done_stage "stopped"
  echo "total $(($(date +%s) - START))s, status $status" >>"$SUMMARY"
  rm -rf "$OUT/bench"
  echo "== summary"
  cat "$SUMMARY"
}
trap finish EXIT

step "machine"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
  nvcc --version | tail -2 || true
  "$PY" -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__); print(jax.devices())"
  "$PY" -c "import cupy; print('cupy', cupy.__version__)" || true
  "$PY" -c "import torch; print('torch', torch.__version__)" || true
  echo "cpus $(nproc); load $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
done_stage ok

step "build"
RRAE_FAST_ENABLE_CUDA=1 CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) timeout "$(limit 240)" \
  "$PY" -m pip install --no-build-isolation --no-deps -v . -Cbuild-dir=build/gpu \
  -Ccmake.define.CMAKE_CUDA_ARCHITECTURES=90-real >"$OUT/build.log" 2>&1
rc=$?
record $rc
if [ $rc -ne 0 ]; then
  tail -40 "$OUT/build.log"
  exit $rc
fi

step "module and device"
(cd /tmp && timeout "$(limit 60)" "$PY" - <<'PY') 2>&1 | tee -a "$OUT/machine.txt"
import jax
import rrae_fast
from rrae_fast.svd import _native

print(rrae_fast.cuda_status())
assert _native.cuda_available(), "the CUDA module was not built or does not load"
gpus = [d for d in jax.devices() if d.platform == "gpu"]
assert gpus, f"JAX sees no GPU: {jax.devices()}"
print("module loaded; JAX devices:", gpus)
PY
rc=${PIPESTATUS[0]}
record "$rc"
[ "$rc" -eq 0 ] || exit "$rc"

SUITES=(tests/svd/test_cuda.py tests/svd/test_forward.py tests/svd/test_transforms.py
  tests/svd/test_traced_k.py tests/svd/test_derivatives.py)
step "import preflight"
timeout "$(limit 60)" "$PY" -P -m pytest --collect-only -q -p no:cacheprovider -o addopts="" \
  "${SUITES[@]}" >"$OUT/preflight.log" 2>&1
rc=$?
record $rc
if [ $rc -ne 0 ]; then
  tail -30 "$OUT/preflight.log"
  exit $rc
fi

step "gpu tests"
RRAE_FAST_REQUIRE_GPU=1 timeout -s INT -k 10 "$(limit 120)" "$PY" -P -m pytest \
  tests/svd/test_cuda.py -q -p no:cacheprovider -o addopts="" -ra --durations=5 \
  >"$OUT/gpu_tests.log" 2>&1
record $?
tail -30 "$OUT/gpu_tests.log"

step "op contract, extreme scales"
timeout -s INT -k 10 "$(limit 90)" "$PY" -P -m pytest tests/svd/test_forward.py \
  -k "test_contract or test_extreme_scales" -q -p no:cacheprovider -o addopts="" -ra \
  --maxfail=20 >"$OUT/op_contract.log" 2>&1
record $?
tail -20 "$OUT/op_contract.log"

# The benchmarks: one pytest run per group of cases, so that each one's JSON survives a later
# stage's time limit. CPU-only peers (scikit-learn, SciPy's svds) are left out here.
export XLA_PYTHON_CLIENT_PREALLOCATE=false # JAX, torch and CuPy share the device
bench() {
  local name=$1 seconds=$2 select=$3
  step "benchmarks: $name"
  timeout -s INT -k 10 "$(limit "$seconds")" "$PY" -P -m pytest benchmarks/bench_svd.py \
    --benchmark-only -p no:cacheprovider -o addopts="" --quick --memory=none \
    -k "($select) and not sklearn and not scipy_svds" \
    --benchmark-json="$OUT/bench/$name.json" >>"$OUT/bench.log" 2>&1
  record $?
  tail -3 "$OUT/bench.log"
  (cd "$OUT/bench" && ls ./*.json >/dev/null 2>&1 &&
    "$PY" "$REPO/benchmarks/report.py" ./*.json >bench.md 2>&1)
  tar -C "$OUT" -czf "$OUT/bench.tgz" bench
}
bench small 75 "200x64"
bench sweep 100 "4096x4608 and (k64 or k256) and not k2500"
bench k1024 45 "4096x4608 and k1024"
bench k2500 45 "4096x4608 and k2500"
[ -f "$OUT/bench/bench.md" ] && head -80 "$OUT/bench/bench.md"

step "op suites, the rest"
timeout -s INT -k 10 "$(limit 120)" "$PY" -P -m pytest tests/svd/test_transforms.py \
  tests/svd/test_traced_k.py tests/svd/test_derivatives.py tests/svd/test_forward.py \
  -k "not test_contract and not test_extreme_scales" -q -p no:cacheprovider -o addopts="" -ra \
  --maxfail=20 >"$OUT/op_tests.log" 2>&1
record $?
tail -30 "$OUT/op_tests.log"
exit $status
