#!/usr/bin/env bash
# The prepared GPU run: build with the CUDA module, the `gpu` tests, the GPU benchmarks, then the
# op test suites with the GPU as JAX's default device.
#
# Usage (repository root, on a machine with a CUDA GPU, nvcc, and JAX with CUDA, CuPy, nanobind,
# scikit-build-core, equinox, optax and pytest-benchmark installed; no internet needed):
#     OUT=gpu-results BUDGET=420 bash benchmarks/gpu_check.sh
# Every step has a time limit taken from BUDGET (seconds for the whole script), so the script
# ends inside it with what it had measured. Writes into $OUT: machine.txt, build.log,
# gpu_tests.log, bench.log, op_tests.log and bench.tgz (one pytest-benchmark JSON per group of
# cases, and bench.md, the report's tables). Exit status: the first failure.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-gpu-results}
mkdir -p "$OUT" "$OUT/bench"
PY=${PYTHON:-python3}
DEADLINE=$(($(date +%s) + ${BUDGET:-420}))
status=0
step() { echo "== $(date -u +%H:%M:%S) $*"; }
# limit SECONDS: the smaller of SECONDS and what is left before the deadline (at least 1)
limit() {
  local left=$((DEADLINE - $(date +%s) - 5))
  local n=$(($1 < left ? $1 : left))
  echo $((n > 1 ? n : 1))
}
keep() { [ "$status" -ne 0 ] || status=$1; }

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

step "build (CUDA module for sm_90 only)"
if ! RRAE_FAST_ENABLE_CUDA=1 timeout "$(limit 240)" "$PY" -m pip install --no-build-isolation \
    --no-deps -v . -Cbuild-dir=build/gpu -Ccmake.define.CMAKE_CUDA_ARCHITECTURES=90-real \
    >"$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"
  exit 1
fi
(cd /tmp && "$PY" -c "import rrae_fast; print(rrae_fast.cuda_status())") |
  tee -a "$OUT/machine.txt"

step "gpu tests"
RRAE_FAST_REQUIRE_GPU=1 timeout -s INT -k 10 "$(limit 180)" "$PY" -P -m pytest tests/svd/test_cuda.py \
  -q -p no:cacheprovider -o addopts="" -ra --durations=5 >"$OUT/gpu_tests.log" 2>&1 || keep $?
tail -30 "$OUT/gpu_tests.log"

# The benchmarks: one pytest run per group of cases, so that each one's JSON survives a later
# step's time limit. CPU-only peers (scikit-learn, SciPy's svds) are left out here.
export XLA_PYTHON_CLIENT_PREALLOCATE=false # JAX, torch and CuPy share the device
bench() {
  local name=$1 seconds=$2 select=$3
  step "gpu benchmarks: $name"
  timeout -s INT -k 10 "$(limit "$seconds")" "$PY" -P -m pytest benchmarks/bench_svd.py \
    --benchmark-only -p no:cacheprovider -o addopts="" --quick --memory=none \
    -k "($select) and not sklearn and not scipy_svds" \
    --benchmark-json="$OUT/bench/$name.json" >>"$OUT/bench.log" 2>&1 || keep $?
  tail -3 "$OUT/bench.log"
  (cd "$OUT/bench" && ls ./*.json >/dev/null 2>&1 &&
    "$PY" "$REPO/benchmarks/report.py" ./*.json >bench.md 2>&1)
  tar -C "$OUT" -czf "$OUT/bench.tgz" bench
}
bench small 90 "200x64"
bench sweep 120 "4096x4608 and (k64 or k256) and not k2500"
bench k1024 60 "4096x4608 and k1024"
bench k2500 60 "4096x4608 and k2500"
[ -f "$OUT/bench/bench.md" ] && head -80 "$OUT/bench/bench.md"

step "op tests with the GPU as JAX's default device"
timeout -s INT -k 10 "$(limit 150)" "$PY" -P -m pytest tests/svd/test_forward.py tests/svd/test_transforms.py \
  tests/svd/test_traced_k.py tests/svd/test_derivatives.py -q -p no:cacheprovider -o addopts="" -ra \
  --maxfail=20 >"$OUT/op_tests.log" 2>&1 || keep $?
tail -30 "$OUT/op_tests.log"
rm -rf "$OUT/bench"
step "done (status $status)"
exit $status
