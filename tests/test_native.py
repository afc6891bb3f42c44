"""The compiled extension: installed, importable, registered."""

from __future__ import annotations

import os

import jax
import numpy as np

import rrae_fast
from rrae_fast import _cpu, _native


def test_extension_installed():
    """The package under test is the installed one, with its compiled module beside it."""
    pkg_dir = os.path.dirname(rrae_fast.__file__)
    assert os.path.dirname(_cpu.__file__) == pkg_dir
    assert "site-packages" in pkg_dir or "dist-packages" in pkg_dir, pkg_dir


def test_registrations():
    """The module exports exactly the expected FFI targets."""
    assert set(_cpu.registrations()) == {_native.TRUNCATED_SVD_TARGET}


def test_cuda_not_built():
    """This build has no CUDA module, and says so."""
    assert _native.cuda_available() is False


def test_blas_thread_control_is_bool():
    """Whether OpenBLAS's per-thread control was found is reported."""
    assert isinstance(_native.blas_thread_control(), bool)


def test_kernel_rejects_bad_k_itself():
    """The handler checks k too, independently of the Python layer."""
    from rrae_fast import _svd

    a = jax.numpy.ones((4, 3))
    try:
        jax.block_until_ready(_svd._ffi_factors(a, 4))
    except Exception as e:  # noqa: BLE001 - XLA's error type differs across jaxlib versions
        assert "k must be in [1, min(m, n)]" in str(e)
    else:
        raise AssertionError("the kernel accepted k > min(m, n)")


def test_version():
    """__version__ comes from the installed metadata."""
    assert rrae_fast.__version__ != "0+unknown"
    assert np.all(np.isfinite(rrae_fast.truncated_svd(np.eye(3), 2)[1]))
