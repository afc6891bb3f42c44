// XLA FFI handler for the CUDA truncated SVD, and the `_cuda` Python module that exports it.
//
// The CUDA twin of cpu_module.cc: the same target name, operands, results and attributes, so
// the Python layer issues one ffi_call for both platforms. Handler chain: TruncatedSvdImpl<T>
// (typed call into the core, on XLA's stream, workspace from XLA's scratch allocator) <-
// TruncatedSvdDispatch (shape and dtype checks) <- XLA_FFI_DEFINE_HANDLER_SYMBOL <-
// NB_MODULE(_cuda).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "cuda/handles.h"
#include "cuda/small_svd.h"
#include "cuda/truncated_svd.h"
#include "cuda/workspace.h"
#include "ffi/codes.h"
#include "ffi/ffi_helpers.h"
#include "nanobind/nanobind.h"
#include "xla/ffi/api/ffi.h"

namespace nb = nanobind;
namespace ffi = xla::ffi;

namespace rrae_fast {
namespace {

// The largest alignment XLA's FFI scratch allocator accepts, and the one the workspace wants
// (cuda/workspace.h's Carver aligns every buffer to it from the block's start).
constexpr size_t kScratchAlignment = 16;
constexpr size_t kWorkspaceAlignment = cuda::Carver::kAlign;
static_assert(kWorkspaceAlignment % kScratchAlignment == 0);

template <typename T>
ffi::Error TruncatedSvdImpl(cudaStream_t stream, ffi::ScratchAllocator& scratch,
                            const ffi_helpers::MatrixBatch& shape, const int32_t* k, int64_t max_k,
                            int64_t init_cols, ffi::AnyBuffer a, ffi::AnyBuffer init,
                            ffi::Result<ffi::AnyBuffer> u, ffi::Result<ffi::AnyBuffer> s,
                            ffi::Result<ffi::AnyBuffer> vt, ffi::Result<ffi::AnyBuffer> info,
                            Method method) {
  cuda::HandleLease lease;  // this call's handles, given back when it returns
  if (Status st = cuda::BorrowHandles(stream, &lease); !st.ok) {
    return ffi_helpers::ToFfiError(st);
  }
  cuda::Context ctx;
  ctx.stream = stream;
  ctx.handles = lease.handles();
  // XLA's scratch allocator refuses alignments above 16 bytes (its FFI implementation answers
  // "Unsupported alignment" and Allocate returns nothing); the workspace's 256-byte alignment
  // comes from asking for that much more and rounding the address up.
  cuda::Allocator allocate = [&scratch](size_t bytes) -> void* {
    std::optional<void*> p =
        scratch.Allocate(bytes + kWorkspaceAlignment - kScratchAlignment, kScratchAlignment);
    if (!p.has_value()) return nullptr;
    const uintptr_t address = reinterpret_cast<uintptr_t>(*p);
    return reinterpret_cast<void*>((address + kWorkspaceAlignment - 1) / kWorkspaceAlignment *
                                   kWorkspaceAlignment);
  };
  Status status = cuda::TruncatedSvd<T>(
      ctx, allocate, shape.batch, shape.m, shape.n, k, max_k,
      reinterpret_cast<const T*>(a.untyped_data()),
      init_cols > 0 ? reinterpret_cast<const T*>(init.untyped_data()) : nullptr, init_cols,
      reinterpret_cast<T*>(u->untyped_data()), reinterpret_cast<T*>(s->untyped_data()),
      reinterpret_cast<T*>(vt->untyped_data()), reinterpret_cast<int32_t*>(info->untyped_data()),
      method);
  return ffi_helpers::ToFfiError(status);
}

ffi::Error TruncatedSvdDispatch(cudaStream_t stream, ffi::ScratchAllocator scratch,
                                ffi::AnyBuffer a, ffi::AnyBuffer k_buf, ffi::AnyBuffer init,
                                ffi::Result<ffi::AnyBuffer> u, ffi::Result<ffi::AnyBuffer> s,
                                ffi::Result<ffi::AnyBuffer> vt, ffi::Result<ffi::AnyBuffer> info,
                                int64_t max_k, int64_t method) {
  auto call = ffi_helpers::CheckSvdCall(a, k_buf, init, *u, *s, *vt, *info, max_k, method);
  if (call.has_error()) return call.error();
  const ffi_helpers::MatrixBatch& shape = call->shape;
  // cuBLAS and cuSOLVER's classic API take 32-bit sizes.
  if (shape.m > INT32_MAX / std::max<int64_t>(shape.n, 1)) {
    return ffi::Error::InvalidArgument("matrix of " + std::to_string(shape.m) + " x " +
                                       std::to_string(shape.n) +
                                       " is too large for 32-bit cuSOLVER");
  }
  const int32_t* k = reinterpret_cast<const int32_t*>(k_buf.untyped_data());
  const Method how = static_cast<Method>(method);
  if (a.element_type() == ffi::DataType::F32) {
    return TruncatedSvdImpl<float>(stream, scratch, shape, k, max_k, call->init_cols, a, init, u,
                                   s, vt, info, how);
  }
  return TruncatedSvdImpl<double>(stream, scratch, shape, k, max_k, call->init_cols, a, init, u, s,
                                  vt, info, how);
}

}  // namespace
}  // namespace rrae_fast

XLA_FFI_DEFINE_HANDLER_SYMBOL(RraeFastTruncatedSvdCuda, rrae_fast::TruncatedSvdDispatch,
                              xla::ffi::Ffi::Bind()
                                  .Ctx<xla::ffi::PlatformStream<cudaStream_t>>()  // stream
                                  .Ctx<xla::ffi::ScratchAllocator>()              // workspace
                                  .Arg<xla::ffi::AnyBuffer>()                     // a [..., m, n]
                                  .Arg<xla::ffi::AnyBuffer>()                     // k [...] int32
                                  .Arg<xla::ffi::AnyBuffer>()  // init [..., m, c]
                                  .Ret<xla::ffi::AnyBuffer>()  // u [..., m, max_k]
                                  .Ret<xla::ffi::AnyBuffer>()  // s [..., max_k]
                                  .Ret<xla::ffi::AnyBuffer>()  // vt [..., max_k, n]
                                  .Ret<xla::ffi::AnyBuffer>()  // info [..., 2] int32
                                  .Attr<int64_t>("max_k")      // output width
                                  .Attr<int64_t>("method"));   // svd_types.h: Method

NB_MODULE(_cuda, m) {
  m.doc() = "rrae_fast CUDA kernels (XLA FFI handlers).";
  m.def(
      "registrations",
      []() {
        nb::dict d;
        d["rrae_fast_truncated_svd"] = nb::capsule(
            reinterpret_cast<void*>(RraeFastTruncatedSvdCuda), "xla._CUSTOM_CALL_TARGET");
        return d;
      },
      "FFI targets of this module: a dict from target name to handler capsule.");
  m.def("codes", &rrae_fast::SvdCodes,
        "The kernel's integer codes by name: {'method': ..., 'path': ...} "
        "(csrc/common/svd_types.h).");
  m.def(
      "device_count",
      []() {
        int count = 0;
        return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
      },
      "Number of CUDA devices the runtime sees (0 without a driver or device).");
  m.def(
      "choose_path",
      [](int64_t m, int64_t n, int64_t max_k, int64_t element_size, int64_t method) {
        return static_cast<int>(
            rrae_fast::cuda::ChoosePath(m, n, max_k, static_cast<size_t>(element_size),
                                        static_cast<rrae_fast::Method>(method)));
      },
      nb::arg("m"), nb::arg("n"), nb::arg("max_k"), nb::arg("element_size"), nb::arg("method"),
      "The path code the kernel takes for this shape on the current device.");
}
