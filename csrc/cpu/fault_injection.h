// Fault injection, for tests of the recovery and error paths: a process-wide switch that makes
// the LAPACK calls (or the Gram path's self-checks) report failure. It is kNone unless a test
// sets it through the test-only module (`_cpu_testing`); the XLA handler reads it at every call
// and passes it down as an argument, so the numerical routines never read it themselves.
#ifndef RRAE_FAST_CPU_FAULT_INJECTION_H_
#define RRAE_FAST_CPU_FAULT_INJECTION_H_

#include <cstdint>

#include "common/export.h"

namespace rrae_fast::cpu {

enum class Fault : int64_t {
  kNone = 0,
  kGesddFails = 1,  // gesdd reports non-convergence; the gesvd fallback runs
  kAllFail = 2,     // gesdd and the gesvd fallback both report non-convergence
  kGramFails = 3,   // the Gram path's self-checks report failure; the dense path runs
};

// The fault the next kernel calls inject (kNone in every normal process).
RRAE_FAST_CORE_API Fault InjectedFault();

// Sets it for the whole process, for every call that starts afterwards.
RRAE_FAST_CORE_API void SetInjectedFault(Fault fault);

}  // namespace rrae_fast::cpu

#endif  // RRAE_FAST_CPU_FAULT_INJECTION_H_
