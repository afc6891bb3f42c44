#!/usr/bin/env bash
# The prepared GPU run: build with the CUDA module, the `gpu` tests, then the GPU benchmarks.
#
# Usage (repository root, on a machine with a CUDA GPU, nvcc, and JAX with CUDA, CuPy, nanobind,
# scikit-build-core, equinox, optax and pytest-benchmark installed; no internet needed):
#     OUT=gpu-results bash benchmarks/gpu_check.sh
# Writes into $OUT: machine.txt, build.log, gpu_tests.log, bench.json, bench.md (report
# tables), bench.log. Budget: about 8 minutes on one H100. Exit status: the first failure.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
status=0
step() { echo "== $(date -u +%H:%M:%S) $*"; }

step "machine"
{
  nvidia-smi || true
  nvcc --version || true
  cmake --version || echo "no cmake on PATH: scikit-build-core needs one (pip install cmake ninja)"
  ninja --version || true
  "$PY" -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__); print(jax.devices())"
  "$PY" -c "import cupy; print('cupy', cupy.__version__)" || true
  "$PY" -c "import torch; print('torch', torch.__version__)" || true
} >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

step "build (CUDA module for sm_90 only, to save time here)"
if ! RRAE_FAST_ENABLE_CUDA=1 "$PY" -m pip install --no-build-isolation --no-deps -v . \
    -Ccmake.define.CMAKE_CUDA_ARCHITECTURES=90-real >"$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"
  exit 1
fi
(cd /tmp && "$PY" -c "from rrae_fast import _native; print(_native.cuda_status())") | tee -a "$OUT/machine.txt"

step "gpu tests"
RRAE_FAST_REQUIRE_GPU=1 "$PY" -m pytest tests/test_cuda.py -q -p no:cacheprovider --no-cov \
    -o addopts="" >"$OUT/gpu_tests.log" 2>&1 || status=$?
tail -25 "$OUT/gpu_tests.log"

step "gpu benchmarks"
"$PY" -m pytest benchmarks/bench_svd.py --benchmark-only --no-cov -p no:cacheprovider \
    -o addopts="" --memory=ours --peer-budget=30 --benchmark-json="$OUT/bench.json" \
    >"$OUT/bench.log" 2>&1 || { [ $status -ne 0 ] || status=$?; }
tail -5 "$OUT/bench.log"
if [ -f "$OUT/bench.json" ]; then
  "$PY" benchmarks/report.py "$OUT/bench.json" >"$OUT/bench.md" 2>&1 || true
  head -60 "$OUT/bench.md"
fi
step "done (status $status)"
exit $status
