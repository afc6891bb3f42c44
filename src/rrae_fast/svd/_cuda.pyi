"""rrae_fast CUDA kernels (XLA FFI handlers)."""



def registrations() -> dict:
    """
    FFI targets of this module: a dict from target name to handler capsule.
    """

def codes() -> dict:
    """
    The kernel's integer codes by name: {'method': ..., 'path': ...} (csrc/common/svd_types.h).
    """

def device_count() -> int:
    """
    Number of CUDA devices the runtime sees (0 without a driver or device).
    """

def choose_path(m: int, n: int, max_k: int, element_size: int, method: int) -> int:
    """The path code the kernel takes for this shape on the current device."""
