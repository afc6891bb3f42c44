// Small helpers shared by the FFI modules: batch/shape extraction and Status -> ffi::Error.
// This file and the *_module.cc files are the only ones that include the XLA FFI headers.
#ifndef RRAE_FAST_FFI_FFI_HELPERS_H_
#define RRAE_FAST_FFI_FFI_HELPERS_H_

#include <cstdint>
#include <string>

#include "common/status.h"
#include "xla/ffi/api/ffi.h"

namespace rrae_fast::ffi_helpers {

namespace ffi = xla::ffi;

struct MatrixBatch {
  int64_t batch = 1;
  int64_t m = 0;
  int64_t n = 0;
};

// Splits the dimensions of a [..., m, n] buffer into (batch, m, n).
inline ffi::ErrorOr<MatrixBatch> SplitBatch(ffi::AnyBuffer::Dimensions dims, const char* what) {
  if (dims.size() < 2) {
    return ffi::Unexpected(ffi::Error::InvalidArgument(std::string(what) +
                                                       " must have at least 2 dimensions, got " +
                                                       std::to_string(dims.size())));
  }
  MatrixBatch out;
  for (size_t i = 0; i + 2 < dims.size(); ++i) out.batch *= dims[i];
  out.m = dims[dims.size() - 2];
  out.n = dims[dims.size() - 1];
  return out;
}

// Checks that a result buffer has shape [batch..., rows, cols] (cols < 0: [batch..., rows]).
inline ffi::Error CheckShape(ffi::AnyBuffer::Dimensions dims, ffi::AnyBuffer::Dimensions input,
                             int64_t rows, int64_t cols, const char* what) {
  const size_t tail = cols < 0 ? 1 : 2;
  const size_t lead = input.size() - 2;
  bool ok = dims.size() == lead + tail;
  for (size_t i = 0; ok && i < lead; ++i) ok = dims[i] == input[i];
  if (ok) ok = dims[lead] == rows && (cols < 0 || dims[lead + 1] == cols);
  if (ok) return ffi::Error::Success();
  return ffi::Error::InvalidArgument(std::string("output ") + what +
                                     " has the wrong shape for the input and k");
}

inline ffi::Error ToFfiError(const Status& status) {
  if (status.ok) return ffi::Error::Success();
  return ffi::Error::Internal(status.message);
}

}  // namespace rrae_fast::ffi_helpers

#endif  // RRAE_FAST_FFI_FFI_HELPERS_H_
