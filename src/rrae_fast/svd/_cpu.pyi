"""rrae_fast CPU kernels (XLA FFI handlers)."""



def registrations() -> dict:
    """
    FFI targets of this module: a dict from target name to handler capsule.
    """

def codes() -> dict:
    """
    The kernel's integer codes by name: {'method': ..., 'path': ...} (csrc/common/svd_types.h).
    """

def prefer_iterative(m: int, n: int, k: int) -> bool:
    """
    Whether the automatic method takes the iterative path for an m x n matrix and rank k.
    """

def prefer_gram(m: int, n: int, k: int) -> bool:
    """
    Whether the automatic method takes the Gram path for a float32 m x n matrix and rank k (after the iteration, where that is preferred too).
    """

def release_workspace() -> None:
    """
    Free the workspace the kernel keeps between calls (it is rebuilt on the next call).
    """

def set_lapack(capsules: dict) -> bool:
    """
    Hand over BLAS/LAPACK entry points: a dict from routine name (e.g. 'sgemm') to a Cython capsule. Returns whether OpenBLAS's thread control was found.
    """
