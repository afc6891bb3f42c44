"""Test setup: float64 enabled (float32 is an explicit parameter), strict promotion, markers."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


def _cuda_devices() -> list:
    try:
        return jax.devices("cuda")
    except RuntimeError:
        return []


def pytest_collection_modifyitems(config, items):
    from rrae_fast.svd import _native

    reason = None
    if not _native.cuda_available():
        reason = "rrae_fast was built without its CUDA module"
    elif not _cuda_devices():
        reason = "no CUDA device is visible"
    if reason is None:
        return
    require = os.environ.get("RRAE_FAST_REQUIRE_GPU") == "1"
    for item in items:
        if "gpu" in item.keywords:
            if require:
                item.fixturenames.insert(0, "_fail_gpu_required")
            else:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def _fail_gpu_required():
    """Turns the skip of a `gpu` test into a failure when RRAE_FAST_REQUIRE_GPU=1."""
    pytest.fail("RRAE_FAST_REQUIRE_GPU=1, but GPU tests cannot run here")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def getkey():
    keys = iter(jax.random.split(jax.random.key(0), 1000))
    return lambda: next(keys)


def run_with_devices(test_file: str, devices: int, skip_test: str) -> None:
    """Runs `test_file`'s tests, except `skip_test` (the caller), in a child pytest process
    that has `devices` simulated CPU devices (they must exist before JAX starts), and fails
    unless every test there passed, none skipped."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    command = [sys.executable, "-m", "pytest", test_file, "-q", "--no-cov"]
    command += ["-p", "no:cacheprovider", "-k", f"not {skip_test}"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, proc.stdout[-3000:]


def on_simulated_devices(test_file: str, devices: int = 8):
    """For a test file whose tests need `devices` devices: the marker that skips them in a
    process with fewer, and the test that runs them in a child that has them (bind it to a
    module-level name starting with `test_`; it skips itself where the devices are here)."""
    here = jax.device_count() >= devices
    needs = pytest.mark.skipif(
        not here, reason="run by test_on_simulated_devices in a child process"
    )

    @pytest.mark.skipif(here, reason="the devices are here: the tests run in this process")
    def test_on_simulated_devices():
        run_with_devices(test_file, devices, "test_on_simulated_devices")

    return needs, test_on_simulated_devices
