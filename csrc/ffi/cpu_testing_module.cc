// `_cpu_testing`: the test-only module of the CPU kernel. It shares `_cpu`'s core library, so
// that its switches act on the kernel XLA calls: fault injection (cpu/fault_injection.h) and the
// AVX2 kernels on or off, both for the whole process; the count of the workspace the kernel
// keeps; and probes that run one piece of the kernel (the sparse sketch, the narrow products,
// the tridiagonal eigenvalues) on bytes, for the tests in tests/svd/kernels. Nothing in the
// package imports it.
#include <cstdint>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/float_env.h"
#include "common/parallel.h"
#include "cpu/avx2.h"
#include "cpu/fault_injection.h"
#include "cpu/narrow_product.h"
#include "cpu/sketch_product.h"
#include "cpu/tridiagonal_eigen.h"
#include "cpu/truncated_svd.h"
#include "nanobind/nanobind.h"
#include "nanobind/stl/string.h"

namespace nb = nanobind;

namespace {

using rrae_fast::cpu::Fault;

constexpr std::pair<const char*, Fault> kFaults[] = {{"none", Fault::kNone},
                                                     {"gesdd_fails", Fault::kGesddFails},
                                                     {"all_fail", Fault::kAllFail},
                                                     {"gram_fails", Fault::kGramFails}};

const char* FaultName(Fault fault) {
  for (const auto& [name, value] : kFaults) {
    if (value == fault) return name;
  }
  return "unknown";
}

// Threads for the probes: each job on a thread of its own, in IEEE mode.
const rrae_fast::Scheduler& SpawnThreads() {
  static const rrae_fast::Scheduler spawn = [](rrae_fast::Task task) {
    std::thread([task = std::move(task)] {
      const rrae_fast::IeeeSubnormals ieee;
      task();
    }).detach();
  };
  return spawn;
}

}  // namespace

NB_MODULE(_cpu_testing, m) {
  m.doc() = "Test hooks and probes of the rrae_fast CPU kernel (not part of the API).";
  m.def(
      "inject_fault",
      [](const std::string& name) {
        for (const auto& [known, value] : kFaults) {
          if (name == known) {
            const char* previous = FaultName(rrae_fast::cpu::InjectedFault());
            rrae_fast::cpu::SetInjectedFault(value);
            return std::string(previous);
          }
        }
        std::string names;
        for (const auto& entry : kFaults)
          names += std::string(names.empty() ? "" : ", ") + entry.first;
        throw nb::value_error(("unknown fault '" + name + "'; known: " + names).c_str());
      },
      nb::arg("name"),
      "Make every kernel call that starts from now on inject this fault, for the whole process: "
      "'gesdd_fails' (gesdd reports non-convergence; gesvd recovers), 'all_fail' (gesvd fails "
      "too: an error), 'gram_fails' (the Gram path's self-checks fail; the dense path runs) or "
      "'none'. Returns the previous one's name.");
  m.def(
      "allow_avx2",
      [](bool allowed) {
        rrae_fast::cpu::SetAvx2Allowed(allowed);
        return rrae_fast::cpu::Avx2Available();
      },
      nb::arg("allowed"),
      "Turn the AVX2/FMA kernels off (False) or back on (True) for the whole process; returns "
      "whether they now run (False on a CPU without them). For tests of the generic code.");
  m.def("kept_workspace_bytes", &rrae_fast::cpu::KeptWorkspaceBytes,
        "Bytes of the workspace the kernel keeps now (at most 256 MiB per dtype).");
  m.def(
      "sketch_product",
      [](nb::bytes a, int64_t m, int64_t n, int64_t b, uint64_t seed, int64_t threads) {
        if (m < 0 || n < 0 || b < 8 || a.size() != static_cast<size_t>(m * n) * sizeof(float)) {
          throw nb::value_error("sketch_product: need m * n float32 bytes, m, n >= 0, b >= 8");
        }
        if (!rrae_fast::cpu::Avx2Available()) {
          throw nb::value_error("sketch_product: AVX2/FMA kernels unavailable");
        }
        std::vector<float> out(m * b), scratch;
        rrae_fast::cpu::SketchProductAX(m, n, b, static_cast<const float*>(a.data()), n, seed,
                                        out.data(), m, scratch,
                                        rrae_fast::cpu::ProductThreads{&SpawnThreads(), threads});
        return nb::bytes(reinterpret_cast<const char*>(out.data()), out.size() * sizeof(float));
      },
      nb::arg("a"), nb::arg("m"), nb::arg("n"), nb::arg("b"), nb::arg("seed"),
      nb::arg("threads") = 1,
      "The iterative path's sparse sketch A·Ω for row-major float32 bytes of A (m x n): "
      "column-major m x b float32 bytes.");
  m.def(
      "narrow_product",
      [](nb::bytes a, int64_t m, int64_t n, nb::bytes x, int64_t b, bool transposed,
         int64_t threads) {
        const int64_t rows = transposed ? m : n;  // X is rows x b
        if (m < 0 || n < 0 || b < 1 || a.size() != static_cast<size_t>(m * n) * sizeof(float) ||
            x.size() != static_cast<size_t>(rows * b) * sizeof(float)) {
          throw nb::value_error(
              "narrow_product: need m * n float32 bytes of A, (m or n) * b of X, b >= 1");
        }
        if (!rrae_fast::cpu::Avx2Available()) {
          throw nb::value_error("narrow_product: AVX2/FMA kernels unavailable");
        }
        const int64_t out_rows = transposed ? n : m;
        std::vector<float> out(out_rows * b), scratch;
        const rrae_fast::cpu::ProductThreads pt{&SpawnThreads(), threads};
        const auto* ap = static_cast<const float*>(a.data());
        const auto* xp = static_cast<const float*>(x.data());
        if (transposed) {
          rrae_fast::cpu::NarrowProductATY(m, n, b, ap, n, xp, m, out.data(), n, scratch, pt);
        } else {
          rrae_fast::cpu::NarrowProductAX(m, n, b, ap, n, xp, n, out.data(), m, scratch, pt);
        }
        return nb::bytes(reinterpret_cast<const char*>(out.data()), out.size() * sizeof(float));
      },
      nb::arg("a"), nb::arg("m"), nb::arg("n"), nb::arg("x"), nb::arg("b"), nb::arg("transposed"),
      nb::arg("threads") = 1,
      "The iterative path's narrow product A·X (or Aᵀ·X if `transposed`) for row-major float32 "
      "bytes of A (m x n) and column-major bytes of X (n x b, or m x b): column-major float32 "
      "bytes of the result.");
  m.def(
      "sketch_matrix",
      [](int64_t n, int64_t b, uint64_t seed) {
        if (n < 0 || b < 8) throw nb::value_error("sketch_matrix: need n >= 0, b >= 8");
        std::vector<float> out(n * b);
        rrae_fast::cpu::SketchMatrix(n, b, seed, out.data(), n);
        return nb::bytes(reinterpret_cast<const char*>(out.data()), out.size() * sizeof(float));
      },
      nb::arg("n"), nb::arg("b"), nb::arg("seed"),
      "The sparse sketching matrix Ω (n x b) for `seed`: column-major float32 bytes.");
  m.def(
      "tridiagonal_eigenvalues",
      [](nb::bytes d, nb::bytes e, int64_t k, bool bisection) {
        const int64_t p = static_cast<int64_t>(d.size() / sizeof(double));
        if (p < 1 || k < 1 || k > p || d.size() != e.size() || d.size() % sizeof(double) != 0) {
          throw nb::value_error(
              "tridiagonal_eigenvalues: need p >= 1 float64 values in d and in e, 1 <= k <= p");
        }
        std::vector<double> lam(k), work(2 * p + 5 * k);
        if (!rrae_fast::cpu::TridiagonalTopEigenvalues(p, k, static_cast<const double*>(d.data()),
                                                       static_cast<const double*>(e.data()),
                                                       bisection, lam.data(), work.data())) {
          throw nb::value_error("tridiagonal_eigenvalues: the QL iteration did not converge");
        }
        return nb::bytes(reinterpret_cast<const char*>(lam.data()), lam.size() * sizeof(double));
      },
      nb::arg("d"), nb::arg("e"), nb::arg("k"), nb::arg("bisection"),
      "The Gram path's k largest eigenvalues of the symmetric tridiagonal matrix with float64 "
      "diagonal d and couplings e (e[i] joins i and i + 1, e[-1] unused; scaled as the path "
      "scales it, largest entry ~1), descending, by multisection or by the QL iteration: "
      "float64 bytes.");
}
