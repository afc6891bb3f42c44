"""
Test hooks and probes of the rrae_fast CPU kernel (not part of the API).
"""



def inject_fault(name: str) -> str:
    """
    Make every kernel call that starts from now on inject this fault, for the whole process: 'gesdd_fails' (gesdd reports non-convergence; gesvd recovers), 'all_fail' (gesvd fails too: an error), 'gram_fails' (the Gram path's self-checks fail; the dense path runs) or 'none'. Returns the previous one's name.
    """

def allow_avx2(allowed: bool) -> bool:
    """
    Turn the AVX2/FMA kernels off (False) or back on (True) for the whole process; returns whether they now run (False on a CPU without them). For tests of the generic code.
    """

def kept_workspace_bytes() -> int:
    """
    Bytes of the workspace the kernel keeps now (at most 256 MiB per dtype).
    """

def sketch_product(a: bytes, m: int, n: int, b: int, seed: int, threads: int = 1) -> bytes:
    """
    The iterative path's sparse sketch A·Ω for row-major float32 bytes of A (m x n): column-major m x b float32 bytes.
    """

def narrow_product(a: bytes, m: int, n: int, x: bytes, b: int, transposed: bool, threads: int = 1) -> bytes:
    """
    The iterative path's narrow product A·X (or Aᵀ·X if `transposed`) for row-major float32 bytes of A (m x n) and column-major bytes of X (n x b, or m x b): column-major float32 bytes of the result.
    """

def sketch_matrix(n: int, b: int, seed: int) -> bytes:
    """
    The sparse sketching matrix Ω (n x b) for `seed`: column-major float32 bytes.
    """

def tridiagonal_eigenvalues(d: bytes, e: bytes, k: int, bisection: bool) -> bytes:
    """
    The Gram path's k largest eigenvalues of the symmetric tridiagonal matrix with float64 diagonal d and couplings e (e[i] joins i and i + 1, e[-1] unused; scaled as the path scales it, largest entry ~1), descending, by multisection or by the QL iteration: float64 bytes.
    """
