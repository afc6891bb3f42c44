// Dense truncated SVD on the CPU: LAPACK gesdd on each batch member, top k kept.
//
// The row-major m x n matrix A is, byte for byte, the column-major n x m matrix Aᵀ. Running
// gesdd on Aᵀ = W Σ Zᵀ gives A = Z Σ Wᵀ, so LAPACK's left factor W (column-major n x r) is our
// Vt (row-major r x n) as it lies in memory, and LAPACK's right factor Zᵀ (column-major r x m)
// holds our U. No transposition of the input is needed.
#include "cpu/truncated_svd.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace rrae_fast::cpu {

// ===========================================================================================
// Helpers
// ===========================================================================================

bool SizesFitLapack(int64_t m, int64_t n) {
  // gesdd's workspace grows like 4·r² + 7·r + max(m, n)·r; keep every size LAPACK sees, and
  // that workspace, representable in a 32-bit integer.
  const int64_t r = std::min(m, n);
  const int64_t big = std::max(m, n);
  const int64_t lwork = 4 * r * r + 7 * r + 4 * big * r + big;
  return m <= INT_MAX && n <= INT_MAX && m * n <= INT_MAX && lwork <= INT_MAX;
}

namespace {

template <typename T>
bool AllFinite(const T* a, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(a[i])) return false;
  }
  return true;
}

template <typename T>
void FillNan(T* p, int64_t count) {
  std::fill(p, p + count, std::numeric_limits<T>::quiet_NaN());
}

// Per-worker scratch, reused across the batch members one worker handles.
template <typename T>
struct Scratch {
  std::vector<T> a;        // copy of the input, destroyed by LAPACK
  std::vector<T> w;        // LAPACK's left factor: n x r, column-major (our Vt)
  std::vector<T> zt;       // LAPACK's right factor: r x m, column-major (our U, transposed)
  std::vector<T> s;        // all r singular values
  std::vector<T> work;     // LAPACK workspace
  std::vector<lapack_int> iwork;
};

// Queries and sizes the LAPACK workspace of one routine; returns false on a query failure.
template <typename T>
lapack_int QueryGesdd(const Lapack<T>& la, lapack_int m, lapack_int n, Scratch<T>& sc) {
  char jobz = 'S';
  lapack_int lda = m, ldu = m, ldvt = std::min(m, n), lwork = -1, info = 0;
  T size = 0;
  la.gesdd(&jobz, &m, &n, sc.a.data(), &lda, sc.s.data(), sc.w.data(), &ldu, sc.zt.data(), &ldvt,
           &size, &lwork, sc.iwork.data(), &info);
  return info == 0 ? static_cast<lapack_int>(size) : -1;
}

template <typename T>
lapack_int QueryGesvd(const Lapack<T>& la, lapack_int m, lapack_int n, Scratch<T>& sc) {
  char job = 'S';
  lapack_int lda = m, ldu = m, ldvt = std::min(m, n), lwork = -1, info = 0;
  T size = 0;
  la.gesvd(&job, &job, &m, &n, sc.a.data(), &lda, sc.s.data(), sc.w.data(), &ldu, sc.zt.data(),
           &ldvt, &size, &lwork, &info);
  return info == 0 ? static_cast<lapack_int>(size) : -1;
}

// Thin SVD of the column-major lm x ln matrix in sc.a (which it destroys) into sc.w, sc.s, sc.zt.
// gesdd first; if its divide-and-conquer step fails to converge, QR iteration (gesvd) on a
// fresh copy of the input. Fails only when both fail.
template <typename T>
Status ThinSvd(const Lapack<T>& la, const T* a, lapack_int lm, lapack_int ln, Scratch<T>& sc,
               Fault fault) {
  const int64_t count = static_cast<int64_t>(lm) * ln;
  const lapack_int r = std::min(lm, ln);
  lapack_int lda = lm, ldu = lm, ldvt = r, info = 0;

  std::memcpy(sc.a.data(), a, sizeof(T) * count);
  lapack_int lwork = QueryGesdd(la, lm, ln, sc);
  if (lwork < 0) return Status::Error(std::string(la.GesddName()) + " workspace query failed");
  sc.work.resize(std::max<lapack_int>(lwork, 1));
  char jobz = 'S';
  if (fault == Fault::kNone) {
    la.gesdd(&jobz, &lm, &ln, sc.a.data(), &lda, sc.s.data(), sc.w.data(), &ldu, sc.zt.data(),
             &ldvt, sc.work.data(), &lwork, sc.iwork.data(), &info);
  } else {
    info = 1;
  }
  if (info < 0) {
    return Status::Error(std::string(la.GesddName()) + ": illegal value in argument " +
                         std::to_string(-info));
  }
  if (info == 0) return Status::Ok();
  const lapack_int gesdd_info = info;

  std::memcpy(sc.a.data(), a, sizeof(T) * count);
  lwork = QueryGesvd(la, lm, ln, sc);
  if (lwork < 0) return Status::Error(std::string(la.GesvdName()) + " workspace query failed");
  sc.work.resize(std::max<lapack_int>(lwork, 1));
  char job = 'S';
  info = 0;
  if (fault != Fault::kAllFail) {
    la.gesvd(&job, &job, &lm, &ln, sc.a.data(), &lda, sc.s.data(), sc.w.data(), &ldu,
             sc.zt.data(), &ldvt, sc.work.data(), &lwork, &info);
  } else {
    info = 1;
  }
  if (info == 0) return Status::Ok();
  return Status::Error(std::string(la.GesddName()) + " failed to converge (info=" +
                       std::to_string(gesdd_info) + ") and so did the fallback " +
                       la.GesvdName() + " (info=" + std::to_string(info) + ")");
}

// One matrix: a is m x n row-major; u m x k, s k, vt k x n row-major.
template <typename T>
Status OneMatrix(const Lapack<T>& la, int64_t m, int64_t n, int64_t k, const T* a, T* u, T* s,
                 T* vt, Scratch<T>& sc, Fault fault) {
  if (!AllFinite(a, m * n)) {
    FillNan(u, m * k);
    FillNan(s, k);
    FillNan(vt, k * n);
    return Status::Ok();
  }
  // LAPACK sees Aᵀ: lm = n rows, ln = m columns.
  const lapack_int lm = static_cast<lapack_int>(n), ln = static_cast<lapack_int>(m);
  const int64_t r = std::min(m, n);
  sc.a.resize(m * n);
  sc.w.resize(n * r);
  sc.zt.resize(r * m);
  sc.s.resize(r);
  sc.iwork.resize(8 * r);
  Status status = ThinSvd(la, a, lm, ln, sc, fault);
  if (!status.ok) return status;

  // W (n x r column-major) is Vt (r x n row-major): its first k rows are contiguous.
  std::memcpy(vt, sc.w.data(), sizeof(T) * k * n);
  std::memcpy(s, sc.s.data(), sizeof(T) * k);
  // Zᵀ (r x m column-major, ld r) holds U[q, j] at q * r + j.
  for (int64_t q = 0; q < m; ++q) {
    std::memcpy(u + q * k, sc.zt.data() + q * r, sizeof(T) * k);
  }
  // Sign convention: the largest-magnitude entry of each column of U is positive.
  for (int64_t j = 0; j < k; ++j) {
    int64_t best = 0;
    T best_abs = -1;
    for (int64_t q = 0; q < m; ++q) {
      const T v = std::abs(u[q * k + j]);
      if (v > best_abs) {
        best_abs = v;
        best = q;
      }
    }
    if (u[best * k + j] < 0) {
      for (int64_t q = 0; q < m; ++q) u[q * k + j] = -u[q * k + j];
      for (int64_t p = 0; p < n; ++p) vt[j * n + p] = -vt[j * n + p];
    }
  }
  return Status::Ok();
}

}  // namespace

// ===========================================================================================
// Batched driver
// ===========================================================================================

template <typename T>
Status TruncatedSvd(const LapackTable& lapack, int64_t batch, int64_t m, int64_t n, int64_t k,
                    const T* a, T* u, T* s, T* vt, const Scheduler& schedule, int64_t workers,
                    Fault fault) {
  if (batch == 0) return Status::Ok();
  const Lapack<T>& la = lapack.Get<T>();
  // Several members at once: one BLAS thread per member, members spread over the workers, so
  // that OpenBLAS's own threads never compete with XLA's. One member: BLAS keeps its threads.
  const bool parallel = batch > 1 && workers > 1 && lapack.set_threads_local != nullptr;
  if (!parallel) workers = 1;
  std::vector<Scratch<T>> scratch(std::max<int64_t>(1, std::min(workers, batch)));
  std::vector<Status> status(batch);
  ParallelFor(batch, workers, schedule, [&](int64_t worker, int64_t b) {
    const int previous = parallel ? lapack.set_threads_local(1) : 0;
    status[b] = OneMatrix(la, m, n, k, a + b * m * n, u + b * m * k, s + b * k, vt + b * k * n,
                          scratch[worker], fault);
    if (parallel) lapack.set_threads_local(previous);
  });
  for (int64_t b = 0; b < batch; ++b) {
    if (!status[b].ok) {
      return Status::Error(status[b].message + " on batch member " + std::to_string(b));
    }
  }
  return Status::Ok();
}

template Status TruncatedSvd<float>(const LapackTable&, int64_t, int64_t, int64_t, int64_t,
                                    const float*, float*, float*, float*, const Scheduler&,
                                    int64_t, Fault);
template Status TruncatedSvd<double>(const LapackTable&, int64_t, int64_t, int64_t, int64_t,
                                     const double*, double*, double*, double*, const Scheduler&,
                                     int64_t, Fault);

}  // namespace rrae_fast::cpu
