"""The compiled extension: installed, importable, registered."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

import helpers
import rrae_fast
from rrae_fast.svd import _cpu, _cpu_testing, _forward, _native


def test_extension_installed():
    """The package under test is the installed one, with its compiled module in the op's
    subpackage."""
    pkg_dir = os.path.dirname(rrae_fast.__file__)
    assert os.path.dirname(_cpu.__file__) == os.path.join(pkg_dir, "svd")
    assert "site-packages" in pkg_dir or "dist-packages" in pkg_dir, pkg_dir


def test_registrations():
    """The module exports exactly the expected FFI targets."""
    expected = {_native.TRUNCATED_SVD_TARGET, _native.SHIFTED_GRAM_SOLVE_TARGET}
    assert set(_cpu.registrations()) == expected


def test_cuda_module_presence_is_reported():
    """`cuda_available` is True exactly when the CUDA module was built and loads."""
    import importlib.util

    built = importlib.util.find_spec("rrae_fast.svd._cuda") is not None
    assert _native.cuda_available() is (built and _native._cuda is not None)
    if not built:
        assert _native.cuda_available() is False


def test_codes_come_from_the_module():
    """The op reads the kernel's codes from the module: every path has a name, in code order,
    and the methods the op passes are the kernel's."""
    codes = _cpu.codes()
    assert [codes["path"][p] for p in _native.PATHS] == list(range(len(_native.PATHS)))
    assert _forward.PATHS == _native.PATHS
    assert set(_forward.METHODS) < set(_native.METHOD_CODES)
    assert _native.METHOD_CODES == codes["method"] and set(codes) == {"method", "path"}


def test_production_module_exposes_only_what_the_op_needs():
    """`_cpu` holds what XLA and the op call; the probes and switches of the tests live in
    `_cpu_testing`, which nothing in the package imports (tests/test_layout.py)."""
    public = {name for name in dir(_cpu) if not name.startswith("_")}
    assert public == {
        "codes",
        "prefer_gram",
        "prefer_iterative",
        "registrations",
        "release_workspace",
        "set_lapack",
    }


def test_modules_share_one_core_library():
    """Both modules link the one core library installed beside them (so the test module's
    switches reach the kernel XLA calls), found through their own directory."""
    lib = pathlib.Path(_cpu.__file__).with_name("librrae_fast_cpu_core.so")
    assert lib.is_file()
    maps = pathlib.Path("/proc/self/maps")
    if maps.exists():
        lines = maps.read_text().splitlines()
        loaded = {line.split()[-1] for line in lines if "rrae_fast_cpu" in line}
        assert loaded == {str(lib.resolve())}


def test_fault_switch_is_process_wide_and_restored(rng):
    """An injected fault reaches the kernel that XLA calls (a jitted op, compiled before the
    switch), and the switch restores the previous fault on leaving."""
    a = jax.numpy.asarray(rng.standard_normal((9, 6)))
    op = jax.jit(lambda x: rrae_fast.truncated_svd(x, 3, method="dense")[1])
    clean = np.asarray(op(a))
    with helpers.injected_fault("all_fail"):
        with pytest.raises(Exception, match="dgesdd failed to converge"):
            jax.block_until_ready(op(a))
        with helpers.injected_fault("none"):
            np.testing.assert_array_equal(op(a), clean)
        assert _cpu_testing.inject_fault("all_fail") == "all_fail"
    assert _cpu_testing.inject_fault("none") == "none"
    np.testing.assert_array_equal(op(a), clean)
    with pytest.raises(ValueError, match="unknown fault 'gesvd'; known: none, gesdd_fails"):
        _cpu_testing.inject_fault("gesvd")


@pytest.mark.parametrize("name", ["_cpu", "_cpu_testing", "_cuda"])
def test_stubs_match_the_built_modules(name, tmp_path):
    """The installed `.pyi` of each extension module is nanobind's stubgen output for it (the
    stubs are checked in for the type checker; regenerate with
    `python -m nanobind.stubgen -m rrae_fast.svd._cpu -o src/rrae_fast/svd/_cpu.pyi`)."""
    pytest.importorskip("nanobind.stubgen")
    if name == "_cuda" and not _native.cuda_available():
        pytest.skip("the CUDA module is not loaded")
    module = f"rrae_fast.svd.{name}"
    out = tmp_path / f"{name}.pyi"
    cmd = [sys.executable, "-m", "nanobind.stubgen", "-q", "-m", module, "-o", str(out)]
    subprocess.run(cmd, check=True, cwd=tmp_path, timeout=120)
    installed = pathlib.Path(_cpu.__file__).with_name(f"{name}.pyi")
    assert installed.read_text() == out.read_text()


def test_blas_thread_control_is_bool():
    """Whether OpenBLAS's per-thread control was found is reported."""
    assert isinstance(_native.blas_thread_control(), bool)


def _scipy_blas_threads() -> list[int]:
    """OpenBLAS's thread count in SciPy's BLAS (the one the kernels call)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import scipy.linalg  # noqa: F401  (loads SciPy's BLAS)

    return [
        info["num_threads"]
        for info in threadpoolctl.threadpool_info()
        if info["internal_api"] == "openblas"
        and "scipy.libs" in info["filepath"].replace("\\", "/")
    ]


def test_calls_leave_blas_thread_count_as_it_was():
    """The kernels run BLAS on one thread per batch member (or per part of a split product)
    and restore OpenBLAS's count after: in SciPy's OpenBLAS the count is the whole process's,
    so members pinned at once on several threads must not leave it at 1 (jaxlib's LAPACK, which
    shares that library, would then run on one thread: jnp.linalg.svd of a 2048² matrix
    1.5 → 2.2 s)."""
    before = _scipy_blas_threads()
    if not before:
        pytest.skip("SciPy's BLAS is not an OpenBLAS that threadpoolctl sees")
    rng = np.random.default_rng(5)
    for _ in range(5):
        batch = rng.standard_normal((8, 300, 200)).astype(np.float32)
        jax.block_until_ready(rrae_fast.truncated_svd(batch, 12, method="iterative"))
        assert _scipy_blas_threads() == before
        small = jax.numpy.asarray(rng.standard_normal((16, 64, 32)).astype(np.float32))
        grad = jax.vmap(jax.grad(lambda x: jax.numpy.sum(rrae_fast.rank_reduce(x, 4) ** 3)))
        jax.block_until_ready(grad(small))
        assert _scipy_blas_threads() == before


@pytest.mark.parametrize(
    "k,max_k,message",
    [
        (4, 4, "max_k must be in [1, min(m, n)]"),
        (3, 2, "k must be in [1, max_k]"),
        (0, 2, "k must"),
    ],
)
def test_kernel_rejects_bad_k_itself(k, max_k, message):
    """The handler checks k and max_k too, independently of the Python layer."""
    a = jax.numpy.ones((2, 4, 3))
    ks = jax.numpy.full((2,), k, jax.numpy.int32)
    with pytest.raises(Exception, match=re.escape(message)):  # XLA's error type varies
        jax.block_until_ready(_forward.ffi_call(a, ks, max_k, None, "auto"))


def test_cpu_kernel_refuses_the_cuda_redo():
    """The method "dense_redo" (the CUDA kernel's redo of members left unconverged) is no CPU
    method: the CPU kernel falls back by itself."""
    a = jax.numpy.ones((2, 4, 3))
    ks = jax.numpy.full((2,), 2, jax.numpy.int32)
    with pytest.raises(Exception, match="dense_redo is for the CUDA kernel only"):
        jax.block_until_ready(_forward.ffi_call(a, ks, 2, None, "dense_redo"))


def test_version():
    """__version__ comes from the installed metadata."""
    assert rrae_fast.__version__ != "0+unknown"
    assert np.all(np.isfinite(rrae_fast.truncated_svd(np.eye(3), 2)[1]))


def test_kept_workspace_is_counted_and_bounded():
    """The kernel's pool counts what it keeps: a repeated call takes the kept set and gives it
    back (the count stays), a larger problem grows that set (at most 256 MiB per dtype are
    kept), and release_workspace empties it."""

    def kept_after(a, k):
        jax.block_until_ready(rrae_fast.truncated_svd(a, k, method="iterative"))
        return _cpu_testing.kept_workspace_bytes()

    rng = np.random.default_rng(4)
    a = rng.standard_normal((600, 400)).astype(np.float32)
    rrae_fast.release_workspace()
    assert _cpu_testing.kept_workspace_bytes() == 0
    kept = kept_after(a, 16)
    assert 0 < kept <= 256 << 20
    for _ in range(3):
        assert kept_after(a, 16) == kept
    bigger = kept_after(rng.standard_normal((900, 700)).astype(np.float32), 48)
    assert kept < bigger <= 256 << 20
    assert kept_after(a, 16) == bigger  # the grown set came back and was taken again
    rrae_fast.release_workspace()
    assert _cpu_testing.kept_workspace_bytes() == 0


@pytest.mark.parametrize("method", ["iterative", "gram"])
def test_workspace_kept_between_calls_changes_no_result(method):
    """The kernel keeps its workspace between calls: results do not depend on what ran before
    (bit for bit), nor on whether that workspace was freed."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((300, 200)).astype(np.float32)
    first = [np.asarray(x) for x in rrae_fast.truncated_svd(a, 6, method=method)]
    rrae_fast.truncated_svd(rng.standard_normal((400, 260)).astype(np.float32), 20, method=method)
    again = [np.asarray(x) for x in rrae_fast.truncated_svd(a, 6, method=method)]
    rrae_fast.release_workspace()
    fresh = [np.asarray(x) for x in rrae_fast.truncated_svd(a, 6, method=method)]
    for x, y, z in zip(first, again, fresh):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)


def test_results_do_not_depend_on_earlier_calls():
    """Calls of every path, run one by one after freeing the workspace and then again in
    shuffled orders, agree bit for bit: neither the kept workspace nor BLAS's thread count
    carries anything from one call to the next (before the thread count was restored after a
    batch, a later float64 call ran its BLAS on one thread and rounded differently)."""
    rng = np.random.default_rng(11)
    jnp = jax.numpy

    def rank_k(m, n, k, dtype):
        u = np.linalg.qr(rng.standard_normal((m, k)))[0]
        v = np.linalg.qr(rng.standard_normal((n, k)))[0]
        a = (u * np.linspace(10.0, 1.0, k)) @ v.T
        return (a + 1e-3 * rng.standard_normal((m, n))).astype(dtype)

    batch = np.stack([rank_k(300, 200, 12, np.float32) for _ in range(6)])
    small = jnp.asarray(np.stack([rank_k(64, 32, 4, np.float32) for _ in range(16)]))
    square, wide, latent = (
        rank_k(300, 300, 40, np.float32),
        rank_k(700, 500, 60, np.float32),
        rank_k(200, 64, 16, np.float32),
    )
    calls = [
        lambda: rrae_fast.truncated_svd(square, 40, method="dense"),
        lambda: rrae_fast.truncated_svd(wide, 60, method="iterative"),
        lambda: rrae_fast.truncated_svd(latent, 16, method="gram"),
    ]
    if jax.config.jax_enable_x64:
        square64 = rank_k(300, 300, 40, np.float64)
        calls.append(lambda: rrae_fast.truncated_svd(square64, 40, method="iterative"))
    # The batches last here: the single calls above ran first with the process as it started.
    calls.append(lambda: rrae_fast.truncated_svd(batch, 12, method="iterative"))
    calls.append(
        lambda: jax.vmap(jax.grad(lambda x: jnp.sum(rrae_fast.rank_reduce(x, 4) ** 3)))(small)
    )
    fresh = []
    for call in calls:
        rrae_fast.release_workspace()
        fresh.append([np.asarray(x) for x in jax.tree_util.tree_leaves(call())])
    for _ in range(2):
        for i in rng.permutation(len(calls)):
            out = [np.asarray(x) for x in jax.tree_util.tree_leaves(calls[i]())]
            for x, y in zip(out, fresh[i]):
                np.testing.assert_array_equal(x, y)
