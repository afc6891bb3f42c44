#include "cpu/avx2.h"

#include <atomic>

namespace rrae_fast::cpu {

namespace {

std::atomic<bool> avx2_allowed{true};

}  // namespace

bool Avx2Available() {
  static const bool supported = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return supported && avx2_allowed.load(std::memory_order_relaxed);
}

void SetAvx2Allowed(bool allowed) { avx2_allowed.store(allowed, std::memory_order_relaxed); }

}  // namespace rrae_fast::cpu
