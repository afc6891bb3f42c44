// The kernels' integer codes by name, as the Python modules export them (`codes()`), so that the
// op reads them from the build instead of keeping a copy: a renamed or removed enumerator is a
// compile error here, not a silent mismatch there.
#ifndef RRAE_FAST_FFI_CODES_H_
#define RRAE_FAST_FFI_CODES_H_

#include <cstdint>
#include <initializer_list>
#include <utility>

#include "common/svd_types.h"
#include "nanobind/nanobind.h"

namespace rrae_fast {

template <typename Enum>
nanobind::dict CodeTable(std::initializer_list<std::pair<const char*, Enum>> entries) {
  nanobind::dict d;
  for (const auto& [name, value] : entries) d[name] = static_cast<int64_t>(value);
  return d;
}

// {"method": {name: code}, "path": {name: code}}: the Method and Path enums of svd_types.h.
inline nanobind::dict SvdCodes() {
  nanobind::dict d;
  d["method"] = CodeTable<Method>({{"auto", Method::kAuto},
                                   {"dense", Method::kDense},
                                   {"iterative", Method::kIterative},
                                   {"gram", Method::kGram},
                                   {"auto_no_fallback", Method::kAutoNoFallback},
                                   {"iterative_no_fallback", Method::kIterativeNoFallback},
                                   {"dense_redo", Method::kDenseRedo}});
  d["path"] = CodeTable<Path>({{"dense", Path::kDense},
                               {"iterative", Path::kIterative},
                               {"iterative_then_dense", Path::kIterativeThenDense},
                               {"non_finite", Path::kNonFinite},
                               {"jacobi", Path::kJacobi},
                               {"unconverged", Path::kUnconverged},
                               {"solver_failed", Path::kSolverFailed},
                               {"gram", Path::kGram},
                               {"iterative_then_gram", Path::kIterativeThenGram}});
  return d;
}

}  // namespace rrae_fast

#endif  // RRAE_FAST_FFI_CODES_H_
