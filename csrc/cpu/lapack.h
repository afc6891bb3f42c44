// BLAS/LAPACK entry points used by the CPU kernels, resolved at run time.
//
// The pointers are handed over once, at import, by the Python module (they come from SciPy's
// `cython_blas` / `cython_lapack` capsules: the same OpenBLAS that jaxlib's own CPU linear algebra
// uses), so the extension links no BLAS of its own and shares one thread pool with the rest of
// the process. Integers are 32-bit (LP64); the module checks this before handing pointers over.
#ifndef RRAE_FAST_CPU_LAPACK_H_
#define RRAE_FAST_CPU_LAPACK_H_

#include <string>

#include "common/export.h"

namespace rrae_fast::cpu {

using lapack_int = int;

template <typename T>
struct Lapack {
  // BLAS
  using GemmFn = void(char* transa, char* transb, lapack_int* m, lapack_int* n, lapack_int* k,
                      T* alpha, T* a, lapack_int* lda, T* b, lapack_int* ldb, T* beta, T* c,
                      lapack_int* ldc);
  using SyrkFn = void(char* uplo, char* trans, lapack_int* n, lapack_int* k, T* alpha, T* a,
                      lapack_int* lda, T* beta, T* c, lapack_int* ldc);
  using TrsmFn = void(char* side, char* uplo, char* transa, char* diag, lapack_int* m,
                      lapack_int* n, T* alpha, T* a, lapack_int* lda, T* b, lapack_int* ldb);
  using TrmmFn = TrsmFn;  // the same arguments
  // LAPACK
  using GesddFn = void(char* jobz, lapack_int* m, lapack_int* n, T* a, lapack_int* lda, T* s, T* u,
                       lapack_int* ldu, T* vt, lapack_int* ldvt, T* work, lapack_int* lwork,
                       lapack_int* iwork, lapack_int* info);
  using GesvdFn = void(char* jobu, char* jobvt, lapack_int* m, lapack_int* n, T* a,
                       lapack_int* lda, T* s, T* u, lapack_int* ldu, T* vt, lapack_int* ldvt,
                       T* work, lapack_int* lwork, lapack_int* info);
  using PotrfFn = void(char* uplo, lapack_int* n, T* a, lapack_int* lda, lapack_int* info);
  using GeqrfFn = void(lapack_int* m, lapack_int* n, T* a, lapack_int* lda, T* tau, T* work,
                       lapack_int* lwork, lapack_int* info);
  using OrgqrFn = void(lapack_int* m, lapack_int* n, lapack_int* k, T* a, lapack_int* lda, T* tau,
                       T* work, lapack_int* lwork, lapack_int* info);
  using TrconFn = void(char* norm, char* uplo, char* diag, lapack_int* n, T* a, lapack_int* lda,
                       T* rcond, T* work, lapack_int* iwork, lapack_int* info);
  using SyevdFn = void(char* jobz, char* uplo, lapack_int* n, T* a, lapack_int* lda, T* w, T* work,
                       lapack_int* lwork, lapack_int* iwork, lapack_int* liwork, lapack_int* info);

  GemmFn* gemm = nullptr;
  SyrkFn* syrk = nullptr;
  TrsmFn* trsm = nullptr;
  TrmmFn* trmm = nullptr;
  GesddFn* gesdd = nullptr;
  GesvdFn* gesvd = nullptr;
  PotrfFn* potrf = nullptr;
  GeqrfFn* geqrf = nullptr;
  OrgqrFn* orgqr = nullptr;
  SyevdFn* syevd = nullptr;
  TrconFn* trcon = nullptr;

  bool Complete() const {
    return gemm && syrk && trsm && trmm && gesdd && gesvd && potrf && geqrf && orgqr && syevd &&
           trcon;
  }
  // The LAPACK name of a routine for this type, e.g. Name("gesdd") -> "sgesdd", for messages.
  static std::string Name(const char* routine);
};

template <>
inline std::string Lapack<float>::Name(const char* routine) {
  return std::string("s") + routine;
}
template <>
inline std::string Lapack<double>::Name(const char* routine) {
  return std::string("d") + routine;
}

// OpenBLAS's `openblas_set_num_threads_local` (OpenBLAS >= 0.3.27): sets the number of threads
// BLAS calls may use and returns the previous value. Despite its name it sets the count of the
// whole process in OpenBLAS's pthreads builds (SciPy's wheels among them: a count set on one
// thread is what every thread then gets), and of the calling thread in its OpenMP builds. Null
// when the BLAS in use does not provide it.
using SetThreadsLocalFn = int(int);

// Finds out which of the two `set` does (ProbeThreadsScope, once, at import; without it the
// count is taken as process-wide). The probe leaves the count as it was.
RRAE_FAST_CORE_API void ProbeThreadsScope(SetThreadsLocalFn* set);

// BLAS on one thread for this object's lifetime, on the thread that creates it; nothing where
// `set` is null. Several may be alive at once on different threads (the members of a batch):
// where the count is process-wide, the first saves it and the last restores it (restoring each
// one's own previous value, as a per-thread count needs, would leave the process at 1 whenever
// two of them overlap). Where the count is process-wide, a pin waits while a BlasThreadsLease
// is held elsewhere, and a pin that belongs to the lease holder's own work (the parts of a
// product it splits among threads) says so with `inside_lease` and does not wait.
class OneBlasThread {
 public:
  explicit OneBlasThread(SetThreadsLocalFn* set, bool inside_lease = false);
  ~OneBlasThread();
  OneBlasThread(const OneBlasThread&) = delete;
  OneBlasThread& operator=(const OneBlasThread&) = delete;

 private:
  SetThreadsLocalFn* set_;
  int previous_ = 0;
};

// The process's BLAS thread count, undisturbed, for this object's lifetime: where the count is
// process-wide, it waits until no OneBlasThread of other work is alive and keeps new ones (and
// other leases) waiting until it ends. Work that calls BLAS with more than one thread holds one,
// so that the thread count its calls see, and with it their rounding, never depends on what
// runs beside it. Nothing where `set` is null or the count is per thread.
class BlasThreadsLease {
 public:
  explicit BlasThreadsLease(SetThreadsLocalFn* set);
  ~BlasThreadsLease();
  BlasThreadsLease(const BlasThreadsLease&) = delete;
  BlasThreadsLease& operator=(const BlasThreadsLease&) = delete;

 private:
  bool held_ = false;
};

struct LapackTable {
  Lapack<float> f32;
  Lapack<double> f64;
  SetThreadsLocalFn* set_threads_local = nullptr;

  template <typename T>
  const Lapack<T>& Get() const;
  bool Complete() const { return f32.Complete() && f64.Complete(); }
  // Stores the pointer for a routine named like "sgemm" or "dgesdd"; false for unknown names.
  RRAE_FAST_CORE_API bool Set(const std::string& name, void* fn);
};

template <>
inline const Lapack<float>& LapackTable::Get<float>() const {
  return f32;
}
template <>
inline const Lapack<double>& LapackTable::Get<double>() const {
  return f64;
}

// The process-wide table, filled by the module at import.
RRAE_FAST_CORE_API LapackTable& GlobalLapack();

}  // namespace rrae_fast::cpu

#endif  // RRAE_FAST_CPU_LAPACK_H_
