// Status values shared by the numerical cores and the FFI layer.
//
// A core routine reports what happened to one matrix with a `Status`; the FFI layer turns a
// failure into an XLA error. Non-finite input is not a failure: the outputs of that matrix are
// filled with NaN and the rest of the batch is computed as usual.
#ifndef RRAE_FAST_COMMON_STATUS_H_
#define RRAE_FAST_COMMON_STATUS_H_

#include <string>
#include <utility>

namespace rrae_fast {

struct Status {
  bool ok = true;
  std::string message;  // names the routine and its code when `ok` is false

  static Status Ok() { return {}; }
  static Status Error(std::string msg) { return {false, std::move(msg)}; }
};

}  // namespace rrae_fast

#endif  // RRAE_FAST_COMMON_STATUS_H_
