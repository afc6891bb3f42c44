// BLAS/LAPACK entry points used by the CPU kernels, resolved at run time.
//
// The pointers are handed over once, at import, by the Python module (they come from SciPy's
// `cython_lapack` capsules, the same OpenBLAS that jaxlib's own CPU linear algebra uses), so the
// extension links no BLAS of its own and shares one thread pool with the rest of the process.
// LAPACK integers are 32-bit (LP64); the module checks this before handing pointers over.
#ifndef RRAE_FAST_CPU_LAPACK_H_
#define RRAE_FAST_CPU_LAPACK_H_

namespace rrae_fast::cpu {

using lapack_int = int;

template <typename T>
using GesddFn = void(char* jobz, lapack_int* m, lapack_int* n, T* a, lapack_int* lda, T* s, T* u,
                     lapack_int* ldu, T* vt, lapack_int* ldvt, T* work, lapack_int* lwork,
                     lapack_int* iwork, lapack_int* info);

template <typename T>
using GesvdFn = void(char* jobu, char* jobvt, lapack_int* m, lapack_int* n, T* a, lapack_int* lda,
                     T* s, T* u, lapack_int* ldu, T* vt, lapack_int* ldvt, T* work,
                     lapack_int* lwork, lapack_int* info);

// OpenBLAS's per-thread thread count (`openblas_set_num_threads_local`, OpenBLAS >= 0.3.27):
// sets the number of threads BLAS calls made from the calling thread may use and returns the
// previous value. Null when the BLAS in use does not provide it.
using SetThreadsLocalFn = int(int);

template <typename T>
struct Lapack {
  GesddFn<T>* gesdd = nullptr;
  GesvdFn<T>* gesvd = nullptr;
  // LAPACK routine names, for error messages.
  static const char* GesddName();
  static const char* GesvdName();
};

template <>
inline const char* Lapack<float>::GesddName() { return "sgesdd"; }
template <>
inline const char* Lapack<double>::GesddName() { return "dgesdd"; }
template <>
inline const char* Lapack<float>::GesvdName() { return "sgesvd"; }
template <>
inline const char* Lapack<double>::GesvdName() { return "dgesvd"; }

struct LapackTable {
  Lapack<float> f32;
  Lapack<double> f64;
  SetThreadsLocalFn* set_threads_local = nullptr;

  template <typename T>
  const Lapack<T>& Get() const;
  bool Complete() const { return f32.gesdd && f32.gesvd && f64.gesdd && f64.gesvd; }
};

template <>
inline const Lapack<float>& LapackTable::Get<float>() const { return f32; }
template <>
inline const Lapack<double>& LapackTable::Get<double>() const { return f64; }

// The process-wide table, filled by the module at import.
LapackTable& GlobalLapack();

}  // namespace rrae_fast::cpu

#endif  // RRAE_FAST_CPU_LAPACK_H_
