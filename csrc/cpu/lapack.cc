// The process-wide LAPACK table (see lapack.h).
#include "cpu/lapack.h"

#include <condition_variable>
#include <mutex>
#include <thread>

namespace rrae_fast::cpu {

namespace {

template <typename T>
bool SetRoutine(Lapack<T>& la, const std::string& routine, void* fn) {
  // clang-format off
  if (routine == "gemm") la.gemm = reinterpret_cast<typename Lapack<T>::GemmFn*>(fn);
  else if (routine == "syrk") la.syrk = reinterpret_cast<typename Lapack<T>::SyrkFn*>(fn);
  else if (routine == "trsm") la.trsm = reinterpret_cast<typename Lapack<T>::TrsmFn*>(fn);
  else if (routine == "trmm") la.trmm = reinterpret_cast<typename Lapack<T>::TrmmFn*>(fn);
  else if (routine == "gesdd") la.gesdd = reinterpret_cast<typename Lapack<T>::GesddFn*>(fn);
  else if (routine == "gesvd") la.gesvd = reinterpret_cast<typename Lapack<T>::GesvdFn*>(fn);
  else if (routine == "potrf") la.potrf = reinterpret_cast<typename Lapack<T>::PotrfFn*>(fn);
  else if (routine == "geqrf") la.geqrf = reinterpret_cast<typename Lapack<T>::GeqrfFn*>(fn);
  else if (routine == "orgqr") la.orgqr = reinterpret_cast<typename Lapack<T>::OrgqrFn*>(fn);
  else if (routine == "trcon") la.trcon = reinterpret_cast<typename Lapack<T>::TrconFn*>(fn);
  else if (routine == "syevd") la.syevd = reinterpret_cast<typename Lapack<T>::SyevdFn*>(fn);
  else return false;
  // clang-format on
  return true;
}

}  // namespace

bool LapackTable::Set(const std::string& name, void* fn) {
  if (name.size() < 2) return false;
  const std::string routine = name.substr(1);
  if (name[0] == 's') return SetRoutine(f32, routine, fn);
  if (name[0] == 'd') return SetRoutine(f64, routine, fn);
  return false;
}

namespace {

struct ThreadsPins {
  std::mutex mutex;
  std::condition_variable changed;  // a pin or a lease ended
  int alive = 0;                    // OneBlasThread objects alive
  int saved = 0;                    // the count before the first of them
  bool process_wide = true;         // see ProbeThreadsScope
  bool leased = false;              // a BlasThreadsLease is held
  int lease_waiting = 0;            // leases waiting for the pins to end
};

ThreadsPins& Pins() {
  static ThreadsPins pins;
  return pins;
}

}  // namespace

void ProbeThreadsScope(SetThreadsLocalFn* set) {
  if (set == nullptr) return;
  ThreadsPins& pins = Pins();
  std::lock_guard<std::mutex> lock(pins.mutex);
  const int original = set(1);
  if (original > 1) {
    // Another thread sets the original count back and reports what it saw: 1 (this thread's
    // setting) where the count is process-wide, its own count otherwise.
    int seen = 0;
    std::thread([&] { seen = set(original); }).join();
    pins.process_wide = seen == 1;
  }
  set(original);
}

OneBlasThread::OneBlasThread(SetThreadsLocalFn* set, bool inside_lease) : set_(set) {
  if (set_ == nullptr) return;
  ThreadsPins& pins = Pins();
  std::unique_lock<std::mutex> lock(pins.mutex);
  if (!pins.process_wide) {
    previous_ = set_(1);
    return;
  }
  // A lease waiting goes first (new pins would keep it waiting for ever); pins alive now end
  // without waiting for anything, so the lease gets its turn.
  if (!inside_lease) {
    pins.changed.wait(lock, [&] { return !pins.leased && pins.lease_waiting == 0; });
  }
  if (pins.alive == 0) pins.saved = set_(1);  // while others are alive the count is 1 already
  ++pins.alive;
}

OneBlasThread::~OneBlasThread() {
  if (set_ == nullptr) return;
  ThreadsPins& pins = Pins();
  std::lock_guard<std::mutex> lock(pins.mutex);
  if (!pins.process_wide) {
    set_(previous_);
    return;
  }
  if (--pins.alive == 0) {
    set_(pins.saved);
    pins.changed.notify_all();
  }
}

BlasThreadsLease::BlasThreadsLease(SetThreadsLocalFn* set) {
  if (set == nullptr) return;
  ThreadsPins& pins = Pins();
  std::unique_lock<std::mutex> lock(pins.mutex);
  if (!pins.process_wide) return;
  ++pins.lease_waiting;
  pins.changed.wait(lock, [&] { return !pins.leased && pins.alive == 0; });
  --pins.lease_waiting;
  pins.leased = held_ = true;
}

BlasThreadsLease::~BlasThreadsLease() {
  if (!held_) return;
  ThreadsPins& pins = Pins();
  std::lock_guard<std::mutex> lock(pins.mutex);
  pins.leased = false;
  pins.changed.notify_all();
}

LapackTable& GlobalLapack() {
  static LapackTable table;
  return table;
}

}  // namespace rrae_fast::cpu
