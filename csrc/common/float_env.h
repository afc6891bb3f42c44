// The floating-point environment the CPU kernels compute in: IEEE subnormals, whoever calls.
//
// XLA's CPU runtime runs its threads with subnormal numbers flushed to zero (FTZ and DAZ in
// x86's MXCSR, FZ in AArch64's FPCR), while OpenBLAS's own worker threads keep IEEE arithmetic.
// A LAPACK call that OpenBLAS splits between the calling thread and its workers then computes
// with two arithmetics at once, and LAPACK's scaling logic is not made for that: on a rank-one
// float64 600 x 400 matrix, dgesdd's bidiagonal solver was handed a zero scale ("DLASCL
// parameter number 4 had an illegal value"), and the fallback dgesvd's QR iteration never
// ended. The kernels therefore set IEEE arithmetic on every thread that runs their work, for the
// duration of that work, and give the caller's mode back afterwards. Inputs with subnormal
// entries are then decomposed as they are, on every path, and results do not depend on the
// thread or the library that called.
#ifndef RRAE_FAST_COMMON_FLOAT_ENV_H_
#define RRAE_FAST_COMMON_FLOAT_ENV_H_

#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace rrae_fast {

namespace float_env {
// The thread's floating-point control word and its flush-to-zero bits.
#if defined(__x86_64__) || defined(__i386__)
using Control = uint32_t;
constexpr Control kFlushBits = 0x8000u | 0x0040u;  // MXCSR: FTZ | DAZ
inline Control Read() { return _mm_getcsr(); }
inline void Write(Control v) { _mm_setcsr(v); }
#elif defined(__aarch64__)
using Control = uint64_t;
constexpr Control kFlushBits = uint64_t{1} << 24;  // FPCR.FZ
inline Control Read() {
  Control v;
  __asm__ __volatile__("mrs %0, fpcr" : "=r"(v));
  return v;
}
inline void Write(Control v) { __asm__ __volatile__("msr fpcr, %0" : : "r"(v)); }
#else
using Control = uint32_t;
constexpr Control kFlushBits = 0;  // nothing known to clear
inline Control Read() { return 0; }
inline void Write(Control) {}
#endif
}  // namespace float_env

// Clears flush-to-zero (and denormals-are-zero) on the calling thread for this object's
// lifetime; restores the previous control word on destruction.
class IeeeSubnormals {
 public:
  IeeeSubnormals() : saved_(float_env::Read()) {
    if (saved_ & float_env::kFlushBits) float_env::Write(saved_ & ~float_env::kFlushBits);
  }
  ~IeeeSubnormals() {
    if (saved_ & float_env::kFlushBits) float_env::Write(saved_);
  }
  IeeeSubnormals(const IeeeSubnormals&) = delete;
  IeeeSubnormals& operator=(const IeeeSubnormals&) = delete;

 private:
  float_env::Control saved_;
};

}  // namespace rrae_fast

#endif  // RRAE_FAST_COMMON_FLOAT_ENV_H_
