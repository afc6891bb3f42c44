// XLA FFI handler for the CPU truncated SVD, and the `_cpu` Python module that exports it.
//
// Handler chain: TruncatedSvdImpl<T> (typed call into the core) <- TruncatedSvdDispatch (shape,
// k and dtype checks) <- XLA_FFI_DEFINE_HANDLER_SYMBOL <- NB_MODULE(_cpu), which exposes what
// XLA and the Python op need and nothing else: `registrations()` and `set_lapack(...)`, the
// kernel's codes by name (`codes()`), the routing predicates and `release_workspace()` (each
// documented at its `m.def`). The kernel probes and the fault switch of the tests are in
// `_cpu_testing` (cpu_testing_module.cc), which shares this module's core library.
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>

#include "common/float_env.h"
#include "cpu/fault_injection.h"
#include "cpu/lapack.h"
#include "cpu/shifted_gram_solve.h"
#include "cpu/truncated_svd.h"
#include "ffi/codes.h"
#include "ffi/ffi_helpers.h"
#include "nanobind/nanobind.h"
#include "nanobind/stl/string.h"
#include "xla/ffi/api/ffi.h"

namespace nb = nanobind;
namespace ffi = xla::ffi;

namespace rrae_fast {
namespace {

// ===========================================================================================
// Handler
// ===========================================================================================

// Every handler computes with IEEE subnormals on the calling thread (an IeeeSubnormals at its
// top) and on the pool's threads (this scheduler), whatever mode XLA runs them in: see
// common/float_env.h for why.
Scheduler IeeeScheduler(ffi::ThreadPool& pool) {
  return [&pool](Task task) {
    pool.Schedule([task = std::move(task)] {
      const IeeeSubnormals ieee;
      task();
    });
  };
}

template <typename T>
ffi::Error TruncatedSvdImpl(ffi::ThreadPool pool, const ffi_helpers::MatrixBatch& shape,
                            const int32_t* k, int64_t max_k, int64_t init_cols, ffi::AnyBuffer a,
                            ffi::AnyBuffer init, ffi::Result<ffi::AnyBuffer> u,
                            ffi::Result<ffi::AnyBuffer> s, ffi::Result<ffi::AnyBuffer> vt,
                            ffi::Result<ffi::AnyBuffer> info, const cpu::SvdOptions& options) {
  const cpu::LapackTable& lapack = cpu::GlobalLapack();
  if (!lapack.Complete()) {
    return ffi::Error::Internal("rrae_fast: LAPACK pointers were not set; import rrae_fast");
  }
  const IeeeSubnormals ieee;
  // The calling thread plus the pool's threads.
  const int64_t workers = 1 + pool.num_threads();
  const Scheduler schedule = IeeeScheduler(pool);
  Status status = cpu::TruncatedSvd<T>(
      lapack, shape.batch, shape.m, shape.n, k, max_k,
      reinterpret_cast<const T*>(a.untyped_data()),
      reinterpret_cast<const T*>(init.untyped_data()), init_cols,
      reinterpret_cast<T*>(u->untyped_data()), reinterpret_cast<T*>(s->untyped_data()),
      reinterpret_cast<T*>(vt->untyped_data()), reinterpret_cast<int32_t*>(info->untyped_data()),
      schedule, workers, options);
  return ffi_helpers::ToFfiError(status);
}

ffi::Error TruncatedSvdDispatch(ffi::ThreadPool pool, ffi::AnyBuffer a, ffi::AnyBuffer k_buf,
                                ffi::AnyBuffer init, ffi::Result<ffi::AnyBuffer> u,
                                ffi::Result<ffi::AnyBuffer> s, ffi::Result<ffi::AnyBuffer> vt,
                                ffi::Result<ffi::AnyBuffer> info, int64_t max_k, int64_t method) {
  auto call = ffi_helpers::CheckSvdCall(a, k_buf, init, *u, *s, *vt, *info, max_k, method);
  if (call.has_error()) return call.error();
  const ffi_helpers::MatrixBatch& shape = call->shape;
  if (!cpu::SizesFitLapack(shape.m, shape.n)) {
    return ffi::Error::InvalidArgument("matrix of " + std::to_string(shape.m) + " x " +
                                       std::to_string(shape.n) +
                                       " is too large for 32-bit LAPACK");
  }
  if (static_cast<cpu::Method>(method) == cpu::Method::kDenseRedo) {
    // The redo of members left unconverged is the CUDA kernel's; the CPU kernel falls back by
    // itself and never asks for one.
    return ffi::Error::InvalidArgument("method code dense_redo is for the CUDA kernel only");
  }
  cpu::SvdOptions options;
  options.method = static_cast<cpu::Method>(method);
  options.fault = cpu::InjectedFault();  // kNone outside tests
  const int32_t* k = reinterpret_cast<const int32_t*>(k_buf.untyped_data());
  if (a.element_type() == ffi::DataType::F32) {
    return TruncatedSvdImpl<float>(pool, shape, k, max_k, call->init_cols, a, init, u, s, vt, info,
                                   options);
  }
  return TruncatedSvdImpl<double>(pool, shape, k, max_k, call->init_cols, a, init, u, s, vt, info,
                                  options);
}

// Shifted Gram solves (cpu/shifted_gram_solve.h): a [..., m, n], basis [..., c, p], s [..., c],
// rhs [..., c, p] of one dtype (float32 or float64), p = min(m, n) <= kShiftedSolveMaxSide;
// results z [..., c, p] and ok [...] int32.
ffi::Error ShiftedGramSolveDispatch(ffi::ThreadPool pool, ffi::AnyBuffer a, ffi::AnyBuffer basis,
                                    ffi::AnyBuffer s, ffi::AnyBuffer rhs,
                                    ffi::Result<ffi::AnyBuffer> z, ffi::Result<ffi::AnyBuffer> ok,
                                    double margin, bool gap_checked) {
  auto shape = ffi_helpers::SplitBatch(a.dimensions(), "input a");
  if (shape.has_error()) return shape.error();
  const int64_t m = shape->m, n = shape->n, p = std::min(m, n);
  if (p < 1 || p > cpu::kShiftedSolveMaxSide) {
    return ffi::Error::InvalidArgument("shifted Gram solves need 1 <= min(m, n) <= " +
                                       std::to_string(cpu::kShiftedSolveMaxSide));
  }
  auto rows = ffi_helpers::SplitBatch(basis.dimensions(), "basis");
  if (rows.has_error()) return rows.error();
  const int64_t c = rows->m;
  if (c < 1 || rows->n != p) {
    return ffi::Error::InvalidArgument("basis must have shape [..., c, min(m, n)], c >= 1");
  }
  for (auto [buffer, r, cols, what] :
       {std::tuple{&basis, c, p, "basis"}, std::tuple{&s, c, int64_t{-1}, "s"},
        std::tuple{&rhs, c, p, "rhs"}, std::tuple{&*z, c, p, "z"}}) {
    if (auto e = ffi_helpers::CheckShape(buffer->dimensions(), a.dimensions(), r, cols, what);
        e.failure()) {
      return e;
    }
  }
  if (static_cast<int64_t>(ok->element_count()) != shape->batch ||
      ok->dimensions().size() + 2 != a.dimensions().size()) {
    return ffi::Error::InvalidArgument("ok must have the batch shape of a");
  }
  const ffi::DataType dtype = a.element_type();
  if (dtype != ffi::DataType::F32 && dtype != ffi::DataType::F64) {
    return ffi::Error::InvalidArgument("shifted Gram solves support float32 and float64");
  }
  if (basis.element_type() != dtype || s.element_type() != dtype || rhs.element_type() != dtype ||
      z->element_type() != dtype || ok->element_type() != ffi::DataType::S32) {
    return ffi::Error::InvalidArgument(
        "basis, s, rhs and z must have the input's dtype, ok int32");
  }
  if (!(margin >= 0) || !std::isfinite(margin)) {
    return ffi::Error::InvalidArgument("margin must be finite and >= 0");
  }
  const cpu::LapackTable& lapack = cpu::GlobalLapack();
  if (!lapack.Complete()) {
    return ffi::Error::Internal("rrae_fast: LAPACK pointers were not set; import rrae_fast");
  }
  const IeeeSubnormals ieee;
  const int64_t workers = 1 + pool.num_threads();
  const Scheduler schedule = IeeeScheduler(pool);
  auto run = [&](auto zero) {
    using T = decltype(zero);
    cpu::ShiftedGramSolve<T>(lapack, shape->batch, m, n, c,
                             reinterpret_cast<const T*>(a.untyped_data()),
                             reinterpret_cast<const T*>(basis.untyped_data()),
                             reinterpret_cast<const T*>(s.untyped_data()),
                             reinterpret_cast<const T*>(rhs.untyped_data()), margin, gap_checked,
                             reinterpret_cast<T*>(z->untyped_data()),
                             reinterpret_cast<int32_t*>(ok->untyped_data()), schedule, workers);
  };
  if (dtype == ffi::DataType::F32) {
    run(0.0f);
  } else {
    run(0.0);
  }
  return ffi::Error::Success();
}

}  // namespace
}  // namespace rrae_fast

XLA_FFI_DEFINE_HANDLER_SYMBOL(RraeFastShiftedGramSolve, rrae_fast::ShiftedGramSolveDispatch,
                              xla::ffi::Ffi::Bind()
                                  .Ctx<xla::ffi::ThreadPool>()  // pool
                                  .Arg<xla::ffi::AnyBuffer>()   // a [..., m, n]
                                  .Arg<xla::ffi::AnyBuffer>()   // basis [..., c, p]
                                  .Arg<xla::ffi::AnyBuffer>()   // s [..., c]
                                  .Arg<xla::ffi::AnyBuffer>()   // rhs [..., c, p]
                                  .Ret<xla::ffi::AnyBuffer>()   // z [..., c, p]
                                  .Ret<xla::ffi::AnyBuffer>()   // ok [...] int32
                                  .Attr<double>("margin")       // relative to max s²
                                  .Attr<bool>("gap_checked"));  // CG may go first

XLA_FFI_DEFINE_HANDLER_SYMBOL(RraeFastTruncatedSvd, rrae_fast::TruncatedSvdDispatch,
                              xla::ffi::Ffi::Bind()
                                  .Ctx<xla::ffi::ThreadPool>()  // pool
                                  .Arg<xla::ffi::AnyBuffer>()   // a [..., m, n]
                                  .Arg<xla::ffi::AnyBuffer>()   // k [...] int32
                                  .Arg<xla::ffi::AnyBuffer>()   // init [..., m, c]
                                  .Ret<xla::ffi::AnyBuffer>()   // u [..., m, max_k]
                                  .Ret<xla::ffi::AnyBuffer>()   // s [..., max_k]
                                  .Ret<xla::ffi::AnyBuffer>()   // vt [..., max_k, n]
                                  .Ret<xla::ffi::AnyBuffer>()   // info [..., 2] int32
                                  .Attr<int64_t>("max_k")       // output width
                                  .Attr<int64_t>("method"));    // svd_types.h: Method

// =============================================================================================
// Python module
// =============================================================================================

namespace {

// The function pointer inside a Cython `__pyx_capi__` capsule (whatever the capsule's name).
void* CapsulePointer(nb::handle capsule, const char* what) {
  PyObject* obj = capsule.ptr();
  if (!PyCapsule_CheckExact(obj)) {
    throw nb::type_error((std::string(what) + " is not a capsule").c_str());
  }
  void* ptr = PyCapsule_GetPointer(obj, PyCapsule_GetName(obj));
  if (ptr == nullptr) throw nb::python_error();
  return ptr;
}

// OpenBLAS's `openblas_set_num_threads_local`, looked up in the library that holds
// `symbol_in_blas`.
rrae_fast::cpu::SetThreadsLocalFn* FindSetThreadsLocal(void* symbol_in_blas) {
  Dl_info info;
  if (dladdr(symbol_in_blas, &info) == 0 || info.dli_fname == nullptr) return nullptr;
  void* lib = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD);
  if (lib == nullptr) return nullptr;
  void* fn = dlsym(lib, "openblas_set_num_threads_local");
  dlclose(lib);  // balanced with the RTLD_NOLOAD open; the library stays loaded
  return reinterpret_cast<rrae_fast::cpu::SetThreadsLocalFn*>(fn);
}

}  // namespace

NB_MODULE(_cpu, m) {
  m.doc() = "rrae_fast CPU kernels (XLA FFI handlers).";
  m.def(
      "registrations",
      []() {
        nb::dict d;
        d["rrae_fast_truncated_svd"] =
            nb::capsule(reinterpret_cast<void*>(RraeFastTruncatedSvd), "xla._CUSTOM_CALL_TARGET");
        d["rrae_fast_shifted_gram_solve"] = nb::capsule(
            reinterpret_cast<void*>(RraeFastShiftedGramSolve), "xla._CUSTOM_CALL_TARGET");
        return d;
      },
      "FFI targets of this module: a dict from target name to handler capsule.");
  m.def("codes", &rrae_fast::SvdCodes,
        "The kernel's integer codes by name: {'method': ..., 'path': ...} "
        "(csrc/common/svd_types.h).");
  m.def("prefer_iterative", &rrae_fast::cpu::PreferIterative, nb::arg("m"), nb::arg("n"),
        nb::arg("k"),
        "Whether the automatic method takes the iterative path for an m x n matrix and rank k.");
  m.def("prefer_gram", &rrae_fast::cpu::PreferGram, nb::arg("m"), nb::arg("n"), nb::arg("k"),
        "Whether the automatic method takes the Gram path for a float32 m x n matrix and rank k "
        "(after the iteration, where that is preferred too).");
  m.def("release_workspace", &rrae_fast::cpu::ReleaseWorkspace,
        "Free the workspace the kernel keeps between calls (it is rebuilt on the next call).");
  m.def(
      "set_lapack",
      [](nb::dict capsules) {
        auto& table = rrae_fast::cpu::GlobalLapack();
        for (auto [name, capsule] : capsules) {
          const std::string routine = nb::cast<std::string>(name);
          if (!table.Set(routine, CapsulePointer(capsule, routine.c_str()))) {
            throw nb::value_error(("unknown BLAS/LAPACK routine " + routine).c_str());
          }
        }
        if (!table.Complete()) throw nb::value_error("incomplete set of BLAS/LAPACK routines");
        table.set_threads_local = FindSetThreadsLocal(reinterpret_cast<void*>(table.f32.gemm));
        rrae_fast::cpu::ProbeThreadsScope(table.set_threads_local);
        return table.set_threads_local != nullptr;
      },
      nb::arg("capsules"),
      "Hand over BLAS/LAPACK entry points: a dict from routine name (e.g. 'sgemm') to a Cython "
      "capsule. Returns whether OpenBLAS's thread control was found.");
}
