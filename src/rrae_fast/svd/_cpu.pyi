"""rrae_fast CPU kernels (XLA FFI handlers)."""



def registrations() -> dict:
    """
    FFI targets of this module: a dict from target name to handler capsule.
    """

def codes() -> dict:
    """
    The kernel's integer codes by name: {'method': ..., 'path': ..., 'fault': ...} (csrc/common/svd_types.h, csrc/cpu/dense_svd.h).
    """

def prefer_iterative(m: int, n: int, k: int) -> bool:
    """
    Whether the automatic method takes the iterative path for an m x n matrix and rank k.
    """

def prefer_gram(m: int, n: int, k: int) -> bool:
    """
    Whether the automatic method takes the Gram path for a float32 m x n matrix and rank k (after the iteration, where that is preferred too).
    """

def sketch_product(a: bytes, m: int, n: int, b: int, seed: int, threads: int = 1) -> bytes:
    """
    The iterative path's sparse sketch A·Ω for row-major float32 bytes of A (m x n): column-major m x b float32 bytes. For tests.
    """

def narrow_product(a: bytes, m: int, n: int, x: bytes, b: int, transposed: bool, threads: int = 1) -> bytes:
    """
    The iterative path's narrow product A·X (or Aᵀ·X if `transposed`) for row-major float32 bytes of A (m x n) and column-major bytes of X (n x b, or m x b): column-major float32 bytes of the result. For tests.
    """

def sketch_matrix(n: int, b: int, seed: int) -> bytes:
    """
    The sparse sketching matrix Ω (n x b) for `seed`: column-major float32 bytes. For tests.
    """

def tridiagonal_eigenvalues(d: bytes, e: bytes, k: int, bisection: bool) -> bytes:
    """
    The Gram path's k largest eigenvalues of the symmetric tridiagonal matrix with float64 diagonal d and couplings e (e[i] joins i and i + 1, e[-1] unused; scaled as the path scales it, largest entry ~1), descending, by multisection or by the QL iteration: float64 bytes. For tests.
    """

def allow_avx2(allowed: bool) -> bool:
    """
    Turn the AVX2/FMA kernels off (False) or back on (True) for the whole process; returns whether they now run (False on a CPU without them). For tests of the generic code.
    """

def release_workspace() -> None:
    """
    Free the workspace the kernel keeps between calls (it is rebuilt on the next call).
    """

def kept_workspace_bytes() -> int:
    """
    Bytes of the workspace the kernel keeps now (for tests; at most 256 MiB per dtype).
    """

def set_lapack(capsules: dict) -> bool:
    """
    Hand over BLAS/LAPACK entry points: a dict from routine name (e.g. 'sgemm') to a Cython capsule. Returns whether OpenBLAS's thread control was found.
    """
