// Small helpers shared by the FFI modules: batch/shape extraction and Status -> ffi::Error.
// This file and the *_module.cc files are the only ones that include the XLA FFI headers.
#ifndef RRAE_FAST_FFI_FFI_HELPERS_H_
#define RRAE_FAST_FFI_FFI_HELPERS_H_

#include <cstdint>
#include <string>
#include <tuple>
#include <utility>

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

// The shapes of one truncated-SVD call: the batch, and the width of the warm start.
struct SvdCall {
  MatrixBatch shape;
  int64_t init_cols = 0;
};

// Checks what both kernels share: a is [..., m, n], k an int32 array of the batch shape,
// 1 <= max_k <= min(m, n), a known method code, init [..., m, c], and results u [..., m, max_k],
// s [..., max_k], vt [..., max_k, n] of a's dtype (float32 or float64) and info [..., 2] int32.
inline ffi::ErrorOr<SvdCall> CheckSvdCall(const ffi::AnyBuffer& a, const ffi::AnyBuffer& k,
                                          const ffi::AnyBuffer& init, const ffi::AnyBuffer& u,
                                          const ffi::AnyBuffer& s, const ffi::AnyBuffer& vt,
                                          const ffi::AnyBuffer& info, int64_t max_k,
                                          int64_t method) {
  auto shape = SplitBatch(a.dimensions(), "input a");
  if (shape.has_error()) return ffi::Unexpected(shape.error());
  const int64_t m = shape->m, n = shape->n;
  const int64_t r = m < n ? m : n;
  if (max_k < 1 || max_k > r) {
    return ffi::Unexpected(ffi::Error::InvalidArgument("max_k must be in [1, min(m, n)] = [1, " +
                                                       std::to_string(r) + "], got " +
                                                       std::to_string(max_k)));
  }
  if (k.element_type() != ffi::DataType::S32 ||
      static_cast<int64_t>(k.element_count()) != shape->batch ||
      k.dimensions().size() + 2 != a.dimensions().size()) {
    return ffi::Unexpected(
        ffi::Error::InvalidArgument("k must be an int32 array of the batch shape of a"));
  }
  if (method < 0 || method > int64_t(Method::kDenseRedo)) {
    return ffi::Unexpected(ffi::Error::InvalidArgument("unknown method code"));
  }
  auto init_dims = init.dimensions();
  const int64_t init_cols = init_dims.size() == a.dimensions().size() ? init_dims.back() : -1;
  if (init_cols < 0 || CheckShape(init_dims, a.dimensions(), m, init_cols, "init").failure()) {
    return ffi::Unexpected(
        ffi::Error::InvalidArgument("init must have shape [..., m, c] matching a"));
  }
  for (auto [buffer, rows, cols, what] :
       {std::tuple{&u, m, max_k, "u"}, std::tuple{&s, max_k, int64_t{-1}, "s"},
        std::tuple{&vt, max_k, n, "vt"}, std::tuple{&info, int64_t{2}, int64_t{-1}, "info"}}) {
    if (auto e = CheckShape(buffer->dimensions(), a.dimensions(), rows, cols, what); e.failure()) {
      return ffi::Unexpected(std::move(e));
    }
  }
  const ffi::DataType dtype = a.element_type();
  if (dtype != ffi::DataType::F32 && dtype != ffi::DataType::F64) {
    return ffi::Unexpected(
        ffi::Error::InvalidArgument("rrae_fast_truncated_svd supports float32 and float64"));
  }
  if (init.element_type() != dtype || u.element_type() != dtype || s.element_type() != dtype ||
      vt.element_type() != dtype) {
    return ffi::Unexpected(
        ffi::Error::InvalidArgument("init and the outputs must have the input's dtype"));
  }
  if (info.element_type() != ffi::DataType::S32) {
    return ffi::Unexpected(ffi::Error::InvalidArgument("info must be int32"));
  }
  return SvdCall{*shape, init_cols};
}

inline ffi::Error ToFfiError(const Status& status) {
  if (status.ok) return ffi::Error::Success();
  return ffi::Error::Internal(status.message);
}

}  // namespace rrae_fast::ffi_helpers

#endif  // RRAE_FAST_FFI_FFI_HELPERS_H_
