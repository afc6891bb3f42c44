#include "cpu/fault_injection.h"

#include <atomic>

namespace rrae_fast::cpu {
namespace {

std::atomic<Fault> injected{Fault::kNone};

}  // namespace

Fault InjectedFault() { return injected.load(std::memory_order_relaxed); }

void SetInjectedFault(Fault fault) { injected.store(fault, std::memory_order_relaxed); }

}  // namespace rrae_fast::cpu
