"""A real multi-process run: two OS processes joined by `jax.distributed.initialize` over
127.0.0.1, two CPU devices each, train one model data-parallel over the four devices and agree
with the single-process run; process 0 alone writes the checkpoints."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np

from distributed_setup import run
from rrae_fast.training import CheckpointDir

HERE = pathlib.Path(__file__).resolve().parent
PROCESSES, DEVICES_EACH, TIMEOUT = 2, 2, 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_the_single_process_model(tmp_path):
    coordinator = f"127.0.0.1:{_free_port()}"
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES_EACH}")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    procs = []
    for pid in range(PROCESSES):
        command = [
            sys.executable,
            str(HERE / "distributed_worker.py"),
            coordinator,
            str(PROCESSES),
            str(pid),
            str(tmp_path / f"seen{pid}.json"),
            str(tmp_path / "run"),
        ]
        procs.append(
            subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=TIMEOUT)[0])
    finally:
        for p in procs:  # bounded: a process left waiting for its peer is stopped
            p.kill()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-4000:]
    seen = [json.loads((tmp_path / f"seen{pid}.json").read_text()) for pid in range(PROCESSES)]
    alone = run()
    for s in seen:
        assert (s["processes"], s["devices"], s["local_devices"]) == (2, 4, 2)
        assert s["k"] == alone.history.k
        np.testing.assert_allclose(s["loss"], alone.history.loss, rtol=1e-4)
    assert seen[0]["loss"] == seen[1]["loss"]  # the replicated loss is one number
    assert len(set(alone.history.k)) > 1  # the tracker moved k: the k paths are compared
    state = CheckpointDir(tmp_path / "run").read_state()  # written once, by process 0
    np.testing.assert_allclose(state["history"]["loss"], alone.history.loss, rtol=1e-4)
