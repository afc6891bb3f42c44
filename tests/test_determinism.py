"""Bitwise determinism: of the op on every path, under concurrent calls, and of training under
load (two processes, one of them beside busy competitors, give the same bits)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rrae_fast

# (shape, dtype, k, method, what the case covers)
PATH_CASES = [
    ((40, 24), np.float32, 3, "gram", "Gram path"),
    ((64, 40, 24), np.float32, 3, "auto", "a batch spread over threads"),
    ((60, 40), np.float64, 5, "dense", "small dense, one BLAS thread"),
    ((600, 400), np.float64, 5, "dense", "large dense, OpenBLAS's threads"),
    ((600, 400), np.float32, 5, "dense", "large dense float32"),
    ((1200, 900), np.float32, 16, "iterative", "iteration split by rows among threads"),
    ((1200, 900), np.float64, 16, "iterative", "float64 iteration"),
    ((3, 300, 260), np.float64, 8, "iterative", "batched iteration"),
]

_CHILD_OP = textwrap.dedent(
    """
    import hashlib, json, sys
    import numpy as np, jax
    jax.config.update("jax_enable_x64", True)
    import rrae_fast
    out = {}
    for i, (shape, dtype, k, method) in enumerate(json.loads(sys.argv[1])):
        a = np.random.default_rng(i).standard_normal(shape).astype(dtype)
        u, s, vt = rrae_fast.truncated_svd(a, k, method=method)
        h = hashlib.sha256()
        for x in (u, s, vt):
            h.update(np.asarray(x).tobytes())
        out[str(i)] = h.hexdigest()
    print(json.dumps(out))
    """
)

_CHILD_TRAIN = textwrap.dedent(
    """
    import hashlib, json
    import jax, numpy as np
    from rrae_fast.experiments import RunConfig, train
    from rrae_fast.models import ModelConfig
    config = RunConfig(
        model=ModelConfig(kind="arrae", latent_size=32, k=8), dataset="synthetic",
        train_size=64, test_size=16, steps=60, finetune_steps=10, batch_size=16,
        tracker={"perf_loss": 40.0, "window": 5, "patience_not_right": 10},
    )
    run = train(config, progress=False)
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(run.model):
        if hasattr(leaf, "dtype"):
            h.update(np.asarray(leaf).tobytes())
    print(json.dumps({"loss": [float(v).hex() for v in run.history.loss],
                      "k": run.history.k, "params": h.hexdigest()}))
    """
)


def _digest(outputs) -> str:
    h = hashlib.sha256()
    for x in outputs:
        h.update(np.asarray(x).tobytes())
    return h.hexdigest()


def _child(script: str, args: list[str], cwd, busy: bool) -> dict:
    """Runs `script` in a fresh interpreter; with `busy`, beside one spinning process per core."""
    spinners = []
    if busy:
        for _ in range(os.cpu_count() or 2):
            spinners.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, *args],
            cwd=cwd,  # not the repository root, whose source tree would shadow the package
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_path_is_bitwise_repeatable(tmp_path):
    """Each path gives the same bits in this process, again, and in fresh processes, one of
    them on a machine whose cores are all busy."""
    here = {}
    for i, (shape, dtype, k, method, _) in enumerate(PATH_CASES):
        a = np.random.default_rng(i).standard_normal(shape).astype(dtype)
        first = _digest(rrae_fast.truncated_svd(a, k, method=method))
        assert _digest(rrae_fast.truncated_svd(a, k, method=method)) == first, PATH_CASES[i]
        here[str(i)] = first
    spec = json.dumps([[list(c[0]), np.dtype(c[1]).name, c[2], c[3]] for c in PATH_CASES])
    idle = _child(_CHILD_OP, [spec], tmp_path, busy=False)
    busy = _child(_CHILD_OP, [spec], tmp_path, busy=True)
    for i, case in enumerate(PATH_CASES):
        assert idle[str(i)] == here[str(i)], case
        assert busy[str(i)] == here[str(i)], case


def test_concurrent_calls_do_not_change_a_result():
    """A large dense SVD (OpenBLAS's threads) and its gradient give the same bits while other
    threads keep calling batched and small ops, which run BLAS on one thread each: the thread
    count those set for the whole process no longer reaches the large call."""
    rng = np.random.default_rng(0)
    big = jnp.asarray(rng.standard_normal((600, 400)))
    w = jnp.asarray(rng.standard_normal((600, 400)))
    big_fn = jax.jit(
        lambda a: (
            rrae_fast.truncated_svd(a, 4, method="dense"),
            jax.grad(lambda x: jnp.sum(w * rrae_fast.rank_reduce(x, 4, method="dense")))(a),
        )
    )
    small = jnp.asarray(rng.standard_normal((16, 80, 60)))
    small_fn = jax.jit(lambda a: rrae_fast.truncated_svd(a, 3, method="dense"))
    jax.block_until_ready(small_fn(small))
    reference = _digest(jax.tree.leaves(jax.block_until_ready(big_fn(big))))

    stop = threading.Event()
    errors = []

    def hammer():
        try:
            while not stop.is_set():
                jax.block_until_ready(small_fn(small))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        digests = [_digest(jax.tree.leaves(jax.block_until_ready(big_fn(big)))) for _ in range(12)]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert digests == [reference] * len(digests)


def test_training_is_bitwise_identical_idle_and_under_load(tmp_path):
    """60 steps of a reduced synthetic aRRAE (its k goes down and up again) in two processes,
    one beside a spinning competitor on every core: the same losses, k path and parameters."""
    idle = _child(_CHILD_TRAIN, [], tmp_path, busy=False)
    busy = _child(_CHILD_TRAIN, [], tmp_path, busy=True)
    assert len(idle["loss"]) == 60 and len(set(idle["k"])) > 2  # the tracker did act
    assert busy["k"] == idle["k"]
    assert busy["loss"] == idle["loss"]
    assert busy["params"] == idle["params"]


@pytest.mark.parametrize("batch", [2, 5])
def test_a_small_member_equals_the_same_matrix_alone(rng, batch):
    """Matrices small enough for one BLAS thread alone (the batch's setting too) give the same
    bits inside a batch and alone, on every path that takes them."""
    a = rng.standard_normal((batch, 50, 30))
    for method in ("dense", "auto"):
        for dtype in (np.float32, np.float64):
            x = a.astype(dtype)
            u, s, vt = rrae_fast.truncated_svd(x, 4, method=method)
            for b in range(batch):
                u1, s1, vt1 = rrae_fast.truncated_svd(x[b], 4, method=method)
                assert _digest((u[b], s[b], vt[b])) == _digest((u1, s1, vt1)), (method, dtype)
