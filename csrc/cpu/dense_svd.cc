// Dense path: LAPACK gesdd on one matrix, gesvd as the fallback.
//
// The row-major m x n matrix A is, byte for byte, the column-major n x m matrix Aᵀ. Running
// gesdd on Aᵀ = W Σ Zᵀ gives A = Z Σ Wᵀ, so LAPACK's left factor W (column-major n x r) is our
// Vt (row-major r x n) as it lies in memory, and LAPACK's right factor Zᵀ (column-major r x m)
// holds our U. No transposition of the input is needed.
#include "cpu/dense_svd.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

namespace rrae_fast::cpu {

namespace {

template <typename T>
lapack_int QueryGesdd(const Lapack<T>& la, lapack_int m, lapack_int n, DenseScratch<T>& sc) {
  char jobz = 'S';
  lapack_int lda = m, ldu = m, ldvt = std::min(m, n), lwork = -1, info = 0;
  T size = 0;
  la.gesdd(&jobz, &m, &n, sc.a.data(), &lda, sc.s.data(), sc.w.data(), &ldu, sc.zt.data(), &ldvt,
           &size, &lwork, sc.iwork.data(), &info);
  return info == 0 ? static_cast<lapack_int>(size) : -1;
}

template <typename T>
lapack_int QueryGesvd(const Lapack<T>& la, lapack_int m, lapack_int n, DenseScratch<T>& sc) {
  char job = 'S';
  lapack_int lda = m, ldu = m, ldvt = std::min(m, n), lwork = -1, info = 0;
  T size = 0;
  la.gesvd(&job, &job, &m, &n, sc.a.data(), &lda, sc.s.data(), sc.w.data(), &ldu, sc.zt.data(),
           &ldvt, &size, &lwork, &info);
  return info == 0 ? static_cast<lapack_int>(size) : -1;
}

// Whether LAPACK's singular values are what a successful call returns: finite, >= 0 and
// descending. An info of 0 with anything else (seen when LAPACK computed in an inconsistent
// floating-point mode, common/float_env.h) is a failure, never a result.
template <typename T>
bool ValidSpectrum(const T* s, lapack_int r) {
  for (lapack_int i = 0; i < r; ++i) {
    if (!(s[i] >= T(0)) || !(s[i] <= std::numeric_limits<T>::max())) return false;
    if (i > 0 && !(s[i] <= s[i - 1])) return false;
  }
  return true;
}

template <typename T>
Status IllegalArgument(const char* routine, lapack_int info) {
  return Status::Error(Lapack<T>::Name(routine) + ": illegal value in argument " +
                       std::to_string(-info));
}

// What went wrong with a call that returned `info` >= 0 but no valid result.
std::string Failure(lapack_int info) {
  return info == 0 ? std::string("returned invalid singular values")
                   : "failed to converge (info=" + std::to_string(info) + ")";
}

// Thin SVD of the column-major lm x ln matrix `a` into sc.w, sc.s, sc.zt.
template <typename T>
Status ThinSvd(const Lapack<T>& la, const T* a, lapack_int lm, lapack_int ln, DenseScratch<T>& sc,
               Fault fault) {
  const int64_t count = static_cast<int64_t>(lm) * ln;
  const lapack_int r = std::min(lm, ln);
  lapack_int lda = lm, ldu = lm, ldvt = r, info = 0;

  std::memcpy(sc.a.data(), a, sizeof(T) * count);
  lapack_int lwork = QueryGesdd(la, lm, ln, sc);
  if (lwork < 0) return Status::Error(Lapack<T>::Name("gesdd") + " workspace query failed");
  sc.work.resize(std::max<lapack_int>(lwork, 1));
  char jobz = 'S';
  if (fault == Fault::kNone) {
    la.gesdd(&jobz, &lm, &ln, sc.a.data(), &lda, sc.s.data(), sc.w.data(), &ldu, sc.zt.data(),
             &ldvt, sc.work.data(), &lwork, sc.iwork.data(), &info);
  } else {
    info = 1;
  }
  if (info < 0) return IllegalArgument<T>("gesdd", info);
  if (info == 0 && ValidSpectrum(sc.s.data(), r)) return Status::Ok();
  const std::string gesdd_outcome = Failure(info);

  // gesdd's divide and conquer failed to converge: QR iteration on a fresh copy.
  std::memcpy(sc.a.data(), a, sizeof(T) * count);
  lwork = QueryGesvd(la, lm, ln, sc);
  if (lwork < 0) return Status::Error(Lapack<T>::Name("gesvd") + " workspace query failed");
  sc.work.resize(std::max<lapack_int>(lwork, 1));
  char job = 'S';
  info = 0;
  if (fault != Fault::kAllFail) {
    la.gesvd(&job, &job, &lm, &ln, sc.a.data(), &lda, sc.s.data(), sc.w.data(), &ldu, sc.zt.data(),
             &ldvt, sc.work.data(), &lwork, &info);
  } else {
    info = 1;
  }
  if (info < 0) return IllegalArgument<T>("gesvd", info);
  if (info == 0 && ValidSpectrum(sc.s.data(), r)) return Status::Ok();
  return Status::Error(Lapack<T>::Name("gesdd") + " " + gesdd_outcome + " and the fallback " +
                       Lapack<T>::Name("gesvd") + " " + Failure(info));
}

}  // namespace

template <typename T>
Status DenseSvd(const Lapack<T>& la, int64_t m, int64_t n, int64_t k, int64_t ldu, const T* a,
                T* u, T* s, T* vt, DenseScratch<T>& sc, Fault fault) {
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
  for (int64_t q = 0; q < m; ++q) std::memcpy(u + q * ldu, sc.zt.data() + q * r, sizeof(T) * k);
  return Status::Ok();
}

template Status DenseSvd<float>(const Lapack<float>&, int64_t, int64_t, int64_t, int64_t,
                                const float*, float*, float*, float*, DenseScratch<float>&, Fault);
template Status DenseSvd<double>(const Lapack<double>&, int64_t, int64_t, int64_t, int64_t,
                                 const double*, double*, double*, double*, DenseScratch<double>&,
                                 Fault);

}  // namespace rrae_fast::cpu
