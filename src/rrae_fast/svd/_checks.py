"""Input validation for the SVD ops: clear exceptions at trace time, finiteness checks."""

from __future__ import annotations

import operator

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from . import _forward

GRADIENT_MODES = ("exact", "tangent")
METHODS = _forward.METHODS

# Half-precision inputs are computed in float32 and cast back: LAPACK has no half routines and
# float32 costs little more to move through memory.
_UPCAST = {jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16)}
_NATIVE = {jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)}


def check_matrix(a, fn: str) -> tuple[Array, jnp.dtype]:
    """Validates ``a`` of shape [..., m, n]; returns it in a kernel dtype and the output dtype."""
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        a = jnp.asarray(a)
    dtype = jnp.dtype(a.dtype)
    if dtype not in _NATIVE and dtype not in _UPCAST:
        raise TypeError(
            f"{fn}: expected a floating-point array (float32, float64, float16 or bfloat16), "
            f"got dtype {dtype}"
        )
    if a.ndim < 2:
        raise ValueError(f"{fn}: expected an array of shape [..., m, n], got shape {a.shape}")
    if any(d == 0 for d in a.shape):
        raise ValueError(f"{fn}: every axis must be non-empty, got shape {a.shape}")
    a = jnp.asarray(a)
    if dtype in _UPCAST:
        a = a.astype(jnp.float32)
    return a, dtype


def _static_int(value, name: str, fn: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be an int, got a bool")
    if isinstance(value, jax.core.Tracer):
        raise TypeError(f"{fn}: {name} must be a concrete Python int, got a traced value")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{fn}: {name} must be an int, got {type(value).__name__}") from None


def check_rank(k, max_k, shape: tuple[int, ...], fn: str) -> tuple[int | Array, int]:
    """Validates the rank. Returns ``(k, max_k)``.

    Without ``max_k``, ``k`` must be a concrete int in ``[1, min(m, n)]`` and ``max_k = k``.
    With ``max_k`` (a concrete int in ``[1, min(m, n)]``), ``k`` may also be a traced integer
    scalar; it should lie in ``[1, max_k]``: a traced one cannot be checked without stopping
    the computation for the host, so it is not checked here (see :func:`clamp_traced_rank`).
    """
    r = min(shape[-2:])
    if max_k is None:
        if isinstance(k, jax.core.Tracer):
            raise TypeError(
                f"{fn}: k is a traced value; pass max_k=<a static bound on k> to use a traced "
                "rank (outputs then have max_k columns, zero beyond k), or a concrete int"
            )
        k = _static_int(k, "k", fn)
        if not 1 <= k <= r:
            raise ValueError(f"{fn}: k must satisfy 1 <= k <= min(m, n) = {r}, got k={k}")
        return k, k
    max_k = _static_int(max_k, "max_k", fn)
    if not 1 <= max_k <= r:
        raise ValueError(f"{fn}: max_k must satisfy 1 <= max_k <= min(m, n) = {r}, got {max_k}")
    if isinstance(k, jax.core.Tracer):
        if k.shape != () or not jnp.issubdtype(k.dtype, jnp.integer):
            raise TypeError(f"{fn}: a traced k must be an integer scalar, got {k.aval}")
        return k, max_k
    k = _static_int(k, "k", fn)
    if not 1 <= k <= max_k:
        raise ValueError(f"{fn}: k must satisfy 1 <= k <= max_k = {max_k}, got k={k}")
    return k, max_k


def clamp_traced_rank(k: Array, max_k: int) -> tuple[Array, Array]:
    """A traced rank brought into ``[1, max_k]`` for the kernels, and whether it was outside
    (the op then gives NaN). No host synchronisation, unlike a run-time error."""
    bad = (k < 1) | (k > max_k)
    return jnp.clip(k, 1, max_k), bad


def check_gradient(gradient: str, fn: str) -> str:
    if gradient not in GRADIENT_MODES:
        raise ValueError(f"{fn}: gradient must be one of {GRADIENT_MODES}, got {gradient!r}")
    return gradient


def check_finite(a: Array, fn: str) -> Array:
    """Raises if ``a`` has a NaN or Inf: at once when concrete, at run time when traced."""
    if isinstance(a, jax.core.Tracer):
        return eqx.error_if(a, ~jnp.all(jnp.isfinite(a)), f"{fn}: input has NaN or Inf entries")
    if not bool(jnp.all(jnp.isfinite(a))):
        raise ValueError(f"{fn}: input has NaN or Inf entries (check_finite=True)")
    return a


def check_method(method: str, fn: str, dtype=None) -> str:
    """Validates ``method``; ``"gram"`` needs float32 (``dtype`` is the kernel's dtype)."""
    if method not in METHODS:
        raise ValueError(f"{fn}: method must be one of {METHODS}, got {method!r}")
    if method == "gram" and dtype is not None and jnp.dtype(dtype) != jnp.float32:
        raise ValueError(
            f"{fn}: method='gram' needs float32 input (float16/bfloat16 are computed in "
            f"float32), got {jnp.dtype(dtype)}: its Gram matrix cannot meet the float64 contract"
        )
    return method


def check_init(init, a: Array, fn: str) -> Array | None:
    """Validates a warm-start basis: [..., m, c] (or [m, c] for every member), 1 <= c <= min(m, n).

    Returns it broadcast to a's batch shape and cast to a's dtype.
    """
    if init is None:
        return None
    init = jnp.asarray(init)
    if not jnp.issubdtype(init.dtype, jnp.floating):
        raise TypeError(f"{fn}: init must be floating point, got dtype {init.dtype}")
    *batch, m, n = a.shape
    if init.ndim < 2 or init.shape[-2] != m:
        raise ValueError(f"{fn}: init must have shape [..., m={m}, c], got {init.shape}")
    c = init.shape[-1]
    if not 1 <= c <= min(m, n):
        raise ValueError(
            f"{fn}: init must have 1 <= c <= min(m, n) = {min(m, n)} columns, got {c}"
        )
    try:
        return jnp.broadcast_to(init, (*batch, m, c)).astype(a.dtype)
    except ValueError:
        raise ValueError(
            f"{fn}: init of shape {init.shape} does not broadcast to the batch {tuple(batch)}"
        ) from None
