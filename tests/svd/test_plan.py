"""The planner of the derivative's route: one decision per platform from the static arguments,
each kernel's own policy, and the forward pass's outcome."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import helpers
import rrae_fast
from rrae_fast.svd import _native, _plan


def test_tangent_mode_needs_no_route():
    for platform in _plan.PLATFORMS:
        assert _plan.route(600, 400, jnp.float32, 10, "auto", "tangent", platform) == "tangent"


def test_cpu_reads_the_cpu_kernels_policy():
    """CG exactly where the CPU kernel's own rule iterates for "auto"."""
    for m, n, k in ((600, 400, 10), (600, 400, 120), (4096, 4608, 1024), (300, 300, 90)):
        expected = "cg" if _native.prefer_iterative(m, n, k) else "full_svd"
        assert _plan.route(m, n, jnp.float64, k, "auto", "exact", "cpu") == expected


def test_cuda_reads_the_cuda_kernels_policy(monkeypatch):
    """On CUDA the route follows the CUDA kernel's choice of path (which iterates up to
    b ≤ r/2, where the CPU kernel stops at r/3), not the CPU kernel's; "gram" is "auto" there
    and the Gram solves never run."""
    asked = []

    def cuda_iterates(m, n, max_k, dtype, method):
        asked.append((m, n, max_k, np.dtype(dtype).itemsize, method))
        return m >= 256 and max_k <= 150

    monkeypatch.setattr(_native, "cuda_iterates", cuda_iterates)
    # 600 x 400 at k = 130: the CPU kernel does not iterate, the (stand-in) CUDA policy does.
    assert _plan.route(600, 400, jnp.float32, 130, "auto", "exact", "cpu") == "full_svd"
    assert _plan.route(600, 400, jnp.float32, 130, "auto", "exact", "cuda") == "cg"
    assert _plan.route(200, 64, jnp.float32, 60, "gram", "exact", "cuda") == "full_svd"
    assert asked == [(600, 400, 130, 4, "auto"), (200, 64, 60, 4, "auto")]
    assert _plan.route(600, 400, jnp.float32, 300, "iterative", "exact", "cuda") == "cg"


def test_without_the_cuda_module_cuda_never_iterates():
    if _native.cuda_available():  # pragma: no cover - needs a CUDA build
        pytest.skip("the CUDA module is loaded")
    assert not _native.cuda_iterates(4096, 4096, 16, jnp.float32, "auto")
    assert set(_plan.routes(600, 400, jnp.float32, 10, "auto", "exact")) == {"cpu", "default"}


def test_other_platforms_take_the_cpu_route_where_it_runs():
    """XLA's SVD elsewhere: the CG route runs there too (one route, no platform switch), the
    Gram solves do not."""
    cases = [(600, 400, jnp.float32, 10, "auto"), (200, 64, jnp.float32, 4, "auto")]
    cases += [(200, 64, jnp.float64, 4, "auto"), (600, 400, jnp.float32, 10, "dense")]
    for m, n, dtype, k, method in cases:
        on_cpu = _plan.route(m, n, dtype, k, method, "exact", "cpu")
        elsewhere = _plan.route(m, n, dtype, k, method, "exact", "default")
        assert elsewhere == ("full_svd" if on_cpu == "gram" else on_cpu)
    assert _plan.route(200, 64, jnp.float32, 4, "auto", "exact", "cpu") == "gram"


def test_forward_width_carries_the_next_singular_value_for_the_gram_route():
    assert _plan.forward_width("gram", 200, 64, 4) == 5
    assert _plan.forward_width("gram", 200, 64, 64) == 64
    assert _plan.forward_width("cg", 600, 400, 10) == 10


def _factors(sigma, m=60, n=40, k=4, seed=0):
    rng = np.random.default_rng(seed)
    a = jnp.asarray(helpers.planted(rng, m, n, sigma))
    u, s, vt = rrae_fast.truncated_svd(a, k + 1)
    return a, u, s, vt


@pytest.mark.parametrize(
    ("sigma", "op", "expected"),
    [
        ([5.0, 4.0, 3.0, 2.0, 1.0], "rank_reduce", True),
        ([5.0, 4.0, 3.0, 2.0, 2.0], "rank_reduce", False),  # a tie at the cut
        ([5.0, 4.0, 4.0, 2.0, 1.0], "rank_reduce", False),  # a tie inside the kept set
        ([5.0, 4.0, 4.0, 2.0, 1.0], "truncated_svd", True),  # harmless for the factors
        ([5.0, 4.0, 3.0, 0.0, 0.0], "rank_reduce", False),  # a kept σ at zero
    ],
)
def test_gram_route_accepts_only_a_well_posed_forward_pass(sigma, op, expected):
    a, u, s, vt = _factors(sigma)
    k = jnp.int32(4)
    ok = _plan.accept("gram", op, a, u, s, vt, k, jnp.array(True))
    assert bool(ok) is expected
    assert not bool(_plan.accept("gram", op, a, u, s, vt, k, jnp.array(False)))


def test_cg_route_asks_whether_the_solves_pay(monkeypatch):
    a, u, s, vt = _factors([5.0, 4.0, 3.0, 2.0, 1.0])
    u, s, vt, k = u[:, :4], s[:4], vt[:4], jnp.int32(4)
    for pays in (True, False):
        monkeypatch.setattr(_plan._solves, "worth_solving", lambda *args, p=pays: jnp.array(p))
        assert bool(_plan.accept("cg", "rank_reduce", a, u, s, vt, k, jnp.array(True))) is pays


def test_diagnose_reports_the_route_the_rules_take(rng):
    latent = helpers.planted(rng, 200, 64, np.linspace(10, 1, 4)) + 1e-3 * rng.standard_normal(
        (200, 64)
    )
    small = np.asarray(latent, np.float32)
    assert rrae_fast.diagnose(small, 4)["backward"] == "gram"
    assert rrae_fast.diagnose(small, 4, gradient="tangent")["backward"] == "tangent"
    assert rrae_fast.diagnose(small, 4, method="dense")["backward"] == "full_svd"
    tied = helpers.planted(rng, 200, 64, [5.0, 4.0, 4.0, 2.0, 1.0]).astype(np.float32)
    assert rrae_fast.diagnose(tied, 4)["backward"] == "gram_then_full_svd"
    assert rrae_fast.diagnose(tied, 4, op="truncated_svd")["backward"] == "gram"
    flat = rng.standard_normal((600, 400))
    out = rrae_fast.diagnose(np.stack([flat, flat]), 10)
    assert out["path"].tolist() == ["iterative_then_dense"] * 2
    assert out["backward"].tolist() == ["cg_then_full_svd"] * 2
    with pytest.raises(ValueError, match="op must be"):
        rrae_fast.diagnose(small, 4, op="svd")
