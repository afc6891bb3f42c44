// Storage for the process-wide LAPACK table (see lapack.h).
#include "cpu/lapack.h"

namespace rrae_fast::cpu {

LapackTable& GlobalLapack() {
  static LapackTable table;
  return table;
}

}  // namespace rrae_fast::cpu
