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

// Clears flush-to-zero and denormals-are-zero on the calling thread for this object's
// lifetime; restores the previous control word on destruction. A no-op on other architectures.
class IeeeSubnormals {
 public:
#if defined(__x86_64__) || defined(__i386__)
  static constexpr uint32_t kFlushBits = 0x8000u | 0x0040u;  // FTZ | DAZ
  IeeeSubnormals() : saved_(_mm_getcsr()) {
    if (saved_ & kFlushBits) _mm_setcsr(saved_ & ~kFlushBits);
  }
  ~IeeeSubnormals() {
    if (saved_ & kFlushBits) _mm_setcsr(saved_);
  }
  // Whether the calling thread flushes subnormals now (for tests).
  static bool Flushing() { return (_mm_getcsr() & kFlushBits) != 0; }
  // Sets or clears flushing on the calling thread (for tests that mimic XLA's threads).
  static void SetFlushing(bool on) {
    const uint32_t csr = _mm_getcsr();
    _mm_setcsr(on ? (csr | kFlushBits) : (csr & ~kFlushBits));
  }

 private:
  uint32_t saved_;
#elif defined(__aarch64__)
  static constexpr uint64_t kFlushBits = uint64_t{1} << 24;  // FPCR.FZ
  IeeeSubnormals() : saved_(Read()) {
    if (saved_ & kFlushBits) Write(saved_ & ~kFlushBits);
  }
  ~IeeeSubnormals() {
    if (saved_ & kFlushBits) Write(saved_);
  }
  static bool Flushing() { return (Read() & kFlushBits) != 0; }
  static void SetFlushing(bool on) {
    const uint64_t fpcr = Read();
    Write(on ? (fpcr | kFlushBits) : (fpcr & ~kFlushBits));
  }

 private:
  static uint64_t Read() {
    uint64_t v;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(v));
    return v;
  }
  static void Write(uint64_t v) { __asm__ __volatile__("msr fpcr, %0" : : "r"(v)); }
  uint64_t saved_;
#else
  IeeeSubnormals() {}
  static bool Flushing() { return false; }
  static void SetFlushing(bool) {}
#endif

 public:
  IeeeSubnormals(const IeeeSubnormals&) = delete;
  IeeeSubnormals& operator=(const IeeeSubnormals&) = delete;
};

}  // namespace rrae_fast

#endif  // RRAE_FAST_COMMON_FLOAT_ENV_H_
