// Typed, value-argument wrappers over the Fortran BLAS/LAPACK pointers of lapack.h.
// All matrices here are column-major.
#ifndef RRAE_FAST_CPU_BLAS_H_
#define RRAE_FAST_CPU_BLAS_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/parallel.h"
#include "cpu/lapack.h"

namespace rrae_fast::cpu::blas {

template <typename T>
void Gemm(const Lapack<T>& la, char ta, char tb, int64_t m, int64_t n, int64_t k, T alpha,
          const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  lapack_int M = m, N = n, K = k, LDA = lda, LDB = ldb, LDC = ldc;
  la.gemm(&ta, &tb, &M, &N, &K, &alpha, const_cast<T*>(a), &LDA, const_cast<T*>(b), &LDB, &beta, c,
          &LDC);
}

// Threads for one large product: `workers` jobs on `schedule`, each making a one-thread BLAS
// call (OneBlasThread with `set_threads_local`). The default runs BLAS as it is, on the
// calling thread.
struct RowSplit {
  const Scheduler* schedule = nullptr;
  int64_t workers = 1;
  SetThreadsLocalFn* set_threads_local = nullptr;
  // The caller holds a BlasThreadsLease: the parts' pins are its own (lapack.h).
  bool inside_lease = false;
};

// Parts `split` makes of `rows` rows (at least 256 each); 1 when it runs BLAS as it is.
inline int64_t RowParts(const RowSplit& split, int64_t rows) {
  if (split.schedule == nullptr || split.set_threads_local == nullptr) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(split.workers, rows / 256));
}

// Calls fn(part, r0, count) for `parts` consecutive ranges [r0, r0 + count) covering `rows`
// (count may be 0 for the last), each on one of split's jobs with its BLAS on one thread.
template <typename Fn>
void ForEachRowPart(const RowSplit& split, int64_t parts, int64_t rows, const Fn& fn) {
  const int64_t chunk = (rows + parts - 1) / parts;
  ParallelFor(parts, parts, *split.schedule, [&](int64_t, int64_t part) {
    const int64_t r0 = part * chunk, count = std::max<int64_t>(0, std::min(chunk, rows - r0));
    const OneBlasThread pin(split.set_threads_local, split.inside_lease);
    fn(part, r0, count);
  });
}

// C (m x n) = alpha·op(A)·B + beta·C with C's rows (op(A)'s rows) split among split.workers
// threads. For the tall-skinny products of the iterative path (m in the thousands, n a block
// width) this beats OpenBLAS's own two threads inside XLA, whose split of such a product suits
// it less (benchmarks/RESULTS.md, "Thresholds of the CPU kernel").
template <typename T>
void GemmRows(const Lapack<T>& la, const RowSplit& split, char ta, char tb, int64_t m, int64_t n,
              int64_t k, T alpha, const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c,
              int64_t ldc) {
  const int64_t parts = RowParts(split, m);
  if (parts < 2) {
    Gemm(la, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  ForEachRowPart(split, parts, m, [&](int64_t, int64_t r0, int64_t rows) {
    if (rows == 0) return;
    const T* a0 = ta == 'N' ? a + r0 : a + r0 * lda;  // rows r0 .. of op(A), column-major A
    Gemm(la, ta, tb, rows, n, k, alpha, a0, lda, b, ldb, beta, c + r0, ldc);
  });
}

// Upper triangle of C = alpha·AᵀA + beta·C, A rows x cols.
template <typename T>
void SyrkUpperT(const Lapack<T>& la, int64_t rows, int64_t cols, T alpha, const T* a, int64_t lda,
                T beta, T* c, int64_t ldc) {
  char uplo = 'U', trans = 'T';
  lapack_int N = cols, K = rows, LDA = lda, LDC = ldc;
  la.syrk(&uplo, &trans, &N, &K, &alpha, const_cast<T*>(a), &LDA, &beta, c, &LDC);
}

// Upper triangle of C = AᵀA (A rows x cols, C cols x cols) with A's rows split among
// split.workers threads: one Gram matrix per part (`partial` holds all but the first), summed
// in part order, so the result does not depend on which thread ran which part.
template <typename T>
void SyrkUpperTRows(const Lapack<T>& la, const RowSplit& split, int64_t rows, int64_t cols,
                    const T* a, int64_t lda, T* c, int64_t ldc, std::vector<T>& partial) {
  const int64_t parts = RowParts(split, rows);
  if (parts < 2) {
    SyrkUpperT(la, rows, cols, T(1), a, lda, T(0), c, ldc);
    return;
  }
  partial.resize((parts - 1) * cols * cols);
  ForEachRowPart(split, parts, rows, [&](int64_t part, int64_t r0, int64_t count) {
    T* out = part == 0 ? c : partial.data() + (part - 1) * cols * cols;
    SyrkUpperT(la, count, cols, T(1), a + r0, lda, T(0), out, part == 0 ? ldc : cols);
  });
  for (int64_t part = 1; part < parts; ++part) {
    const T* g = partial.data() + (part - 1) * cols * cols;
    for (int64_t j = 0; j < cols; ++j) {
      for (int64_t i = 0; i <= j; ++i) c[i + j * ldc] += g[i + j * cols];
    }
  }
}

// B ← B·R⁻¹ with R upper triangular (cols x cols), B rows x cols.
template <typename T>
void TrsmRightUpper(const Lapack<T>& la, int64_t rows, int64_t cols, const T* r, int64_t ldr, T* b,
                    int64_t ldb) {
  char side = 'R', uplo = 'U', trans = 'N', diag = 'N';
  lapack_int M = rows, N = cols, LDR = ldr, LDB = ldb;
  T one = 1;
  la.trsm(&side, &uplo, &trans, &diag, &M, &N, &one, const_cast<T*>(r), &LDR, b, &LDB);
}

// TrsmRightUpper with B's rows split among split.workers threads (one BLAS thread each).
template <typename T>
void TrsmRightUpperRows(const Lapack<T>& la, const RowSplit& split, int64_t rows, int64_t cols,
                        const T* r, int64_t ldr, T* b, int64_t ldb) {
  const int64_t parts = RowParts(split, rows);
  if (parts < 2) {
    TrsmRightUpper(la, rows, cols, r, ldr, b, ldb);
    return;
  }
  ForEachRowPart(split, parts, rows, [&](int64_t, int64_t r0, int64_t count) {
    if (count > 0) TrsmRightUpper(la, count, cols, r, ldr, b + r0, ldb);
  });
}

// Cholesky factor (upper) in place; returns LAPACK's info.
template <typename T>
lapack_int PotrfUpper(const Lapack<T>& la, int64_t n, T* a, int64_t lda) {
  char uplo = 'U';
  lapack_int N = n, LDA = lda, info = 0;
  la.potrf(&uplo, &N, a, &LDA, &info);
  return info;
}

}  // namespace rrae_fast::cpu::blas

#endif  // RRAE_FAST_CPU_BLAS_H_
