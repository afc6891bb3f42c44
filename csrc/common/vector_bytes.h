// Heap bytes held by a set of std::vectors (their capacities), for workspace accounting.
#ifndef RRAE_FAST_COMMON_VECTOR_BYTES_H_
#define RRAE_FAST_COMMON_VECTOR_BYTES_H_

#include <cstddef>

namespace rrae_fast {

template <typename... V>
std::size_t VectorBytes(const V&... v) {
  return (std::size_t{0} + ... + (v.capacity() * sizeof(typename V::value_type)));
}

}  // namespace rrae_fast

#endif  // RRAE_FAST_COMMON_VECTOR_BYTES_H_
