// Batched driver: path selection, non-finite members, sign convention, threads.
#include "cpu/truncated_svd.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "common/finite.h"
#include "cpu/gram_svd.h"
#include "cpu/subspace_svd.h"

namespace rrae_fast::cpu {

// ===========================================================================================
// Sizes and the selector
// ===========================================================================================

bool SizesFitLapack(int64_t m, int64_t n) {
  // gesdd's workspace grows like 4·r² + 7·r + max(m, n)·r; keep every size LAPACK sees, and
  // that workspace, representable in a 32-bit integer.
  const int64_t r = std::min(m, n);
  const int64_t big = std::max(m, n);
  const int64_t lwork = 4 * r * r + 7 * r + 4 * big * r + big;
  return m <= INT_MAX && n <= INT_MAX && m * n <= INT_MAX && lwork <= INT_MAX;
}

bool PreferIterative(int64_t m, int64_t n, int64_t k) {
  const int64_t r = std::min(m, n);
  // Below a few hundred the dense SVD is cache-resident and hard to beat. Above, iterating on
  // a block of width b pays while b is a modest fraction of r: the dense SVD's cost does not
  // depend on k, the iteration's grows with b (benchmarks/RESULTS.md, "Thresholds of the CPU
  // kernel"). A matrix whose spectrum does not let the iteration converge costs the attempt on
  // top of the dense SVD, which grows with b: keep b <= r / 3.
  return r >= 256 && 3 * SubspaceWidth(m, n, k) <= r;
}

bool PreferGram(int64_t m, int64_t n, int64_t k) {
  // Measured against LAPACK's sgesdd (Gaussian float32 matrices, p = min(m, n) from 8 to 256,
  // max(m, n) / p from 1 to 8, k from 1 to p; benchmarks/gram_crossover.py, the figures in
  // benchmarks/RESULTS.md). The Gram path's cost is dominated by O(q·p²) and O(p³) terms with
  // small constants, plus O(p²·k) terms that make it lose to LAPACK for k near p on square
  // matrices beyond p = 128.
  const int64_t p = std::min(m, n), q = std::max(m, n);
  if (p > kGramMaxSide) return false;
  if (p <= 128 || q >= 2 * p) return true;
  return 2 * k <= p;
}

namespace {

// A matrix whose dense SVD (~m·n·r flops) is too small to share between threads.
bool IsSmall(int64_t m, int64_t n) { return m * n * std::min(m, n) < (int64_t{1} << 24); }

SubspaceOptions IterativeOptions(int64_t m, int64_t n, int64_t k, double eps) {
  SubspaceOptions opt;
  opt.block = SubspaceWidth(m, n, k);
  // Budget: about a tenth of a dense SVD (~8·m·n·r flops) spent on iterations (4·m·n·b each)
  // before falling back, so a spectrum that converges slowly costs at most ~1.1x dense.
  const double r = double(std::min(m, n));
  opt.max_iters = std::clamp<int64_t>(static_cast<int64_t>(0.2 * r / double(opt.block)), 2, 30);
  // A quarter of the accuracy contract's residual bound (20·√max(m, n)·ε·‖A‖₂).
  opt.tol = 5.0 * std::sqrt(double(std::max(m, n))) * eps;
  // Same start for every member of a batch: a member's iteration does not depend on its place.
  opt.seed = static_cast<uint64_t>(m) * 1000003u + static_cast<uint64_t>(n) * 1009u + k;
  return opt;
}

// Flips (u_j, vt_j) so that the largest-magnitude entry of u_j is positive (its first
// occurrence on ties). u is row-major: its columns are scanned along the rows, a group of them
// at a time, never down one column alone, which would touch a cache line per entry.
template <typename T>
void ApplySignConvention(int64_t m, int64_t n, int64_t k, int64_t ldu, T* u, T* vt) {
  // Columns in groups of kGroup, each group's running maxima in registers over all rows (a
  // branch-free loop the compiler vectorises); the flips, if any, in one pass over the rows.
  constexpr int64_t kGroup = 8;
  thread_local std::vector<T> sign;
  sign.assign(k, T(1));
  bool any = false;
  for (int64_t j0 = 0; j0 < k; j0 += kGroup) {
    const int64_t width = std::min(kGroup, k - j0);
    T best_abs[kGroup], best[kGroup];
    for (int64_t t = 0; t < kGroup; ++t) {
      best_abs[t] = T(-1);
      best[t] = T(0);
    }
    for (int64_t q = 0; q < m; ++q) {
      const T* row = u + q * ldu + j0;
      if (width == kGroup) {
        for (int64_t t = 0; t < kGroup; ++t) {
          const T v = std::abs(row[t]);
          const bool larger = v > best_abs[t];
          best_abs[t] = larger ? v : best_abs[t];
          best[t] = larger ? row[t] : best[t];
        }
      } else {
        for (int64_t t = 0; t < width; ++t) {
          const T v = std::abs(row[t]);
          const bool larger = v > best_abs[t];
          best_abs[t] = larger ? v : best_abs[t];
          best[t] = larger ? row[t] : best[t];
        }
      }
    }
    for (int64_t t = 0; t < width; ++t) {
      sign[j0 + t] = best[t] < 0 ? T(-1) : T(1);
      any = any || best[t] < 0;
    }
  }
  if (!any) return;
  for (int64_t q = 0; q < m; ++q) {
    T* row = u + q * ldu;
    for (int64_t j = 0; j < k; ++j) row[j] *= sign[j];
  }
  for (int64_t j = 0; j < k; ++j) {
    if (sign[j] < 0) {
      for (int64_t c = 0; c < n; ++c) vt[j * n + c] = -vt[j * n + c];
    }
  }
}

// Whether the first k columns of u (m x ldu, row-major) and the first k rows of vt (k x n)
// are finite.
template <typename T>
bool FactorsFinite(int64_t m, int64_t n, int64_t k, int64_t ldu, const T* u, const T* vt) {
  for (int64_t q = 0; q < m; ++q) {
    if (!AllFinite(u + q * ldu, k)) return false;
  }
  return AllFinite(vt, k * n);
}

template <typename T>
struct Scratch {
  DenseScratch<T> dense;
  SubspaceScratch<T> subspace;
  GramScratch gram;
};

// Workspace kept between calls. Fresh pages cost time to fault in (up to a twelfth of an
// iterative call; benchmarks/RESULTS.md, "Thresholds of the CPU kernel"), and glibc hands
// blocks of that size back to the system when they are freed, so that every call would pay
// again. One pool per element type keeps up to kMaxKept scratch sets
// of at most kKeepBytes together; the dense path's buffers (a copy of A and full factors) are
// never kept. ReleaseWorkspace empties the pools.
template <typename T>
class ScratchPool {
 public:
  static constexpr std::size_t kKeepBytes = std::size_t{256} << 20;
  static constexpr std::size_t kMaxKept = 8;

  static ScratchPool& Get() {
    static ScratchPool* pool = new ScratchPool;  // never destroyed: no exit-time ordering
    return *pool;
  }
  std::unique_ptr<Scratch<T>> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    if (kept_.empty()) return std::make_unique<Scratch<T>>();
    std::unique_ptr<Scratch<T>> sc = std::move(kept_.back());
    kept_.pop_back();
    kept_bytes_ -= Bytes(*sc);
    return sc;
  }
  void Give(std::unique_ptr<Scratch<T>> sc) {
    sc->dense = DenseScratch<T>{};
    const std::size_t bytes = Bytes(*sc);
    std::lock_guard<std::mutex> lock(mu_);
    if (kept_.size() < kMaxKept && kept_bytes_ + bytes <= kKeepBytes) {
      kept_bytes_ += bytes;
      kept_.push_back(std::move(sc));
    }
  }
  void Clear() {
    std::lock_guard<std::mutex> lock(mu_);
    kept_.clear();
    kept_bytes_ = 0;
  }
  std::size_t KeptBytes() {
    std::lock_guard<std::mutex> lock(mu_);
    return kept_bytes_;
  }

 private:
  static std::size_t Bytes(const Scratch<T>& sc) { return sc.subspace.Bytes() + sc.gram.Bytes(); }

  std::mutex mu_;
  std::vector<std::unique_ptr<Scratch<T>>> kept_;
  std::size_t kept_bytes_ = 0;  // of the kept sets, which no call changes while they are kept
};

// One matrix: the top k triplets into outputs of width max_k (u: m x max_k, s: max_k,
// vt: max_k x n), whose entries beyond k are zero.
template <typename T>
Status OneMatrix(const LapackTable& table, int64_t m, int64_t n, int64_t k, int64_t max_k,
                 const T* a, const T* init, int64_t init_cols, T* u, T* s, T* vt, int32_t* info,
                 Scratch<T>& sc, const SvdOptions& options, const blas::RowSplit& threads) {
  const Lapack<T>& la = table.Get<T>();
  const T nan = std::numeric_limits<T>::quiet_NaN();
  info[1] = 0;
  auto not_finite = [&] {
    std::fill(u, u + m * max_k, nan);
    std::fill(s, s + max_k, nan);
    std::fill(vt, vt + max_k * n, nan);
    info[0] = static_cast<int32_t>(Path::kNonFinite);
    return Status::Ok();
  };
  const Method method = BaseMethod(options.method);
  const bool fallback = method == options.method;  // after an iteration that does not converge
  const bool iterate =
      method == Method::kIterative || (method == Method::kAuto && PreferIterative(m, n, k));
  // NaN/Inf input: checked up front, except where the iteration's first product, a full sweep
  // over A anyway, shows it (a separate check would be one more sweep;
  // SubspaceResult::not_finite).
  const bool iteration_checks = iterate && options.fault == Fault::kNone;
  if (!iteration_checks && !AllFinite(a, m * n)) return not_finite();
  // Columns beyond k: zero.
  for (int64_t q = 0; q < m; ++q) std::fill(u + q * max_k + k, u + (q + 1) * max_k, T(0));
  std::fill(s + k, s + max_k, T(0));
  std::fill(vt + k * n, vt + max_k * n, T(0));
  // The Gram path (float32 only): chosen, or the automatic choice where it beats LAPACK, also
  // as the fallback of an iteration that did not converge.
  const bool gram = std::is_same_v<T, float> &&
                    (method == Method::kGram || (method == Method::kAuto && PreferGram(m, n, k)));
  info[0] = static_cast<int32_t>(Path::kDense);
  if (iterate && options.fault == Fault::kNone) {
    SubspaceResult result;
    SubspaceOptions opt = IterativeOptions(m, n, k, double(std::numeric_limits<T>::epsilon()));
    opt.threads = threads;
    Status st = SubspaceSvd(table, m, n, k, max_k, a, init, init_cols, u, s, vt, sc.subspace, opt,
                            &result);
    if (!st.ok) return st;
    if (result.not_finite) {
      if (!AllFinite(a, m * n)) return not_finite();
      // Finite, but the first product overflowed: the dense path below.
    }
    info[1] = static_cast<int32_t>(result.passes);
    // Finite factors or none: where the Ritz vectors' scaling by 1/σ overflows (all-subnormal
    // float32 input, σ_1 ~ 1e-40), the iteration's result goes to the fallback, like an
    // unconverged one (an O((m + n)·k) check). So does a matrix whose σ_1 lies so far down
    // that the iteration's products are subnormal, each rounded to an absolute spacing that is
    // no longer small against ε·σ_1; LAPACK scales such a matrix up first.
    const T low = std::numeric_limits<T>::min() / std::numeric_limits<T>::epsilon();
    if (result.converged && (!(AllFinite(s, k) && FactorsFinite(m, n, k, max_k, u, vt)) ||
                             (s[0] > T(0) && s[0] < low))) {
      result.converged = false;
    }
    if (result.converged) {
      info[0] = static_cast<int32_t>(Path::kIterative);
      ApplySignConvention(m, n, k, max_k, u, vt);
      return Status::Ok();
    }
    info[0] = static_cast<int32_t>(Path::kIterativeThenDense);
    if (!fallback) {
      // No fallback: placeholders (finite, orthonormal) that the caller replaces.
      info[0] = static_cast<int32_t>(Path::kUnconverged);
      for (int64_t q = 0; q < m; ++q) {
        for (int64_t j = 0; j < k; ++j) u[q * max_k + j] = q == j ? T(1) : T(0);
      }
      std::fill(s, s + k, T(1));
      for (int64_t j = 0; j < k; ++j) {
        for (int64_t c = 0; c < n; ++c) vt[j * n + c] = c == j ? T(1) : T(0);
      }
      return Status::Ok();
    }
  }
  if constexpr (std::is_same_v<T, float>) {
    const bool gram_runs = options.fault == Fault::kNone || options.fault == Fault::kGramFails;
    if (gram && gram_runs && GramSvd(table.Get<double>(), m, n, k, max_k, a, u, s, vt, sc.gram) &&
        options.fault != Fault::kGramFails) {
      info[0] = static_cast<int32_t>(info[1] > 0 ? Path::kIterativeThenGram : Path::kGram);
      ApplySignConvention(m, n, k, max_k, u, vt);
      return Status::Ok();
    }
  }
  const Fault lapack_fault = options.fault == Fault::kGramFails ? Fault::kNone : options.fault;
  Status st = DenseSvd(la, m, n, k, max_k, a, u, s, vt, sc.dense, lapack_fault);
  if (!st.ok) return st;
  ApplySignConvention(m, n, k, max_k, u, vt);
  return Status::Ok();
}

}  // namespace

// ===========================================================================================
// Batched driver
// ===========================================================================================

template <typename T>
Status TruncatedSvd(const LapackTable& lapack, int64_t batch, int64_t m, int64_t n,
                    const int32_t* k, int64_t max_k, const T* a, const T* init, int64_t init_cols,
                    T* u, T* s, T* vt, int32_t* info, const Scheduler& schedule, int64_t workers,
                    const SvdOptions& options) {
  if (batch == 0) return Status::Ok();
  for (int64_t b = 0; b < batch; ++b) {
    if (k[b] < 1 || k[b] > max_k) {
      return Status::Error("k must be in [1, max_k] = [1, " + std::to_string(max_k) + "], got " +
                           std::to_string(k[b]) + " for batch member " + std::to_string(b));
    }
  }
  // Several members at once: one BLAS thread per member, members spread over the workers, so
  // that OpenBLAS's own threads never compete with XLA's. One member: BLAS keeps its threads if
  // the matrix is big enough to share; a small one runs on one thread, where OpenBLAS's
  // threading costs more than it gives (benchmarks/RESULTS.md, "Thresholds of the CPU kernel").
  const bool can_pin = lapack.set_threads_local != nullptr;
  const bool parallel = batch > 1 && workers > 1 && can_pin;
  const bool pin = parallel || (can_pin && IsSmall(m, n));
  // One matrix on several workers: its large products are split by rows among them instead.
  blas::RowSplit threads;
  if (!parallel && batch == 1 && !pin && can_pin && schedule) {
    // No more parts than cores: XLA's pool may hold as many threads as cores besides the
    // calling one, and a part left over would run after the others.
    const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
    threads = blas::RowSplit{&schedule, std::min(workers, cores), lapack.set_threads_local,
                             /*inside_lease=*/true};
  }
  if (!parallel) workers = 1;
  // Unpinned work runs BLAS with the process's thread count: it holds that count for its
  // duration, so that no pin of a call running beside it changes the count under it (and with
  // it the rounding of its results).
  const BlasThreadsLease lease(pin ? nullptr : lapack.set_threads_local);
  // One scratch set per worker, from the pool and back to it whatever happens.
  struct Lease {
    std::vector<std::unique_ptr<Scratch<T>>> sets;
    ~Lease() {
      for (auto& sc : sets) ScratchPool<T>::Get().Give(std::move(sc));
    }
  } scratch;
  scratch.sets.resize(std::max<int64_t>(1, std::min(workers, batch)));
  for (auto& sc : scratch.sets) sc = ScratchPool<T>::Get().Take();
  std::vector<Status> status(batch);
  ParallelFor(batch, workers, schedule, [&](int64_t worker, int64_t b) {
    const OneBlasThread one(pin ? lapack.set_threads_local : nullptr);
    const T* seed = init_cols > 0 ? init + b * m * init_cols : nullptr;
    status[b] = OneMatrix(lapack, m, n, k[b], max_k, a + b * m * n, seed, init_cols,
                          u + b * m * max_k, s + b * max_k, vt + b * max_k * n, info + 2 * b,
                          *scratch.sets[worker], options, threads);
  });
  for (int64_t b = 0; b < batch; ++b) {
    if (!status[b].ok) {
      return Status::Error(status[b].message + " on batch member " + std::to_string(b));
    }
  }
  return Status::Ok();
}

void ReleaseWorkspace() {
  ScratchPool<float>::Get().Clear();
  ScratchPool<double>::Get().Clear();
}

std::size_t KeptWorkspaceBytes() {
  return ScratchPool<float>::Get().KeptBytes() + ScratchPool<double>::Get().KeptBytes();
}

template Status TruncatedSvd<float>(const LapackTable&, int64_t, int64_t, int64_t, const int32_t*,
                                    int64_t, const float*, const float*, int64_t, float*, float*,
                                    float*, int32_t*, const Scheduler&, int64_t,
                                    const SvdOptions&);
template Status TruncatedSvd<double>(const LapackTable&, int64_t, int64_t, int64_t, const int32_t*,
                                     int64_t, const double*, const double*, int64_t, double*,
                                     double*, double*, int32_t*, const Scheduler&, int64_t,
                                     const SvdOptions&);

}  // namespace rrae_fast::cpu
